"""Reward functions for the RL tests, importable as `rl_rewards:<name>` (tests/ is on sys.path)."""


def digit_share(prompts, completions, **_):
    """The share of characters that are digits: a tiny random model can learn to raise it."""
    return [sum(c.isdigit() for c in text) / max(len(text), 1) for text in completions]


def from_column(prompts, completions, value, **_):
    """The row's own `value` column: a reward whose every figure is known before generation."""
    return list(value)


def gated_digit_share(prompts, completions, gate, **_):
    """`digit_share`, but while the file `<gate>/hold` exists the scorer writes its process id
    to `<gate>/scoring` and waits (at most 120 s): a test can catch a reward worker mid-score."""
    import os
    import time
    from pathlib import Path

    folder = Path(gate[0])
    if (folder / "hold").exists():
        (folder / "scoring").write_text(str(os.getpid()))
        deadline = time.monotonic() + 120
        while (folder / "hold").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    return digit_share(prompts, completions)
