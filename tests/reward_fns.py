"""Reward functions for tests/test_rewards.py, imported by path as `reward_fns:<name>`."""

NOT_CALLABLE = 3
seen = []  # the keyword arguments of each call to `scaled`


def scaled(prompts, completions, score, factor=1.0, **columns):
    seen.append({"prompts": prompts, "completions": completions, "score": score, "factor": factor, **columns})
    return [None if s is None else s * factor for s in score]


def too_short(prompts, completions, **_):
    return [1.0] * (len(prompts) - 1)


def text_reward(prompts, completions, **_):
    return [1.0, "good"]


def not_a_list(prompts, completions, **_):
    return 1.0


def broken(prompts, completions, **_):
    raise KeyError("label")


def brevity(prompts, completions, **_):
    """1 / words: the shorter answer scores higher."""
    return [1.0 / max(len(c.split()), 1) for c in completions]
