"""A Python function as a reward source, called the way TRL calls reward functions.

The function is named by an import path `pkg.module:fn` and called as

    fn(prompts=prompts, completions=completions, **columns, **options)

where `columns` are the rows' metadata turned into one list per key (every key that any
row has; a row without it gives None), and `options` come from the recipe. It returns one
number or None per completion; None counts as 0.0 and is tallied in `none_count`.
"""

from __future__ import annotations

import importlib

from rayalign.rewards.values import RewardError, to_rewards

_RESERVED = ("prompts", "completions")


def import_function(path: str):
    """The callable named by `pkg.module:fn`; a RewardError says which part failed and why."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr or ":" in attr:
        raise RewardError(f"reward function {path!r}: expected an import path 'pkg.module:function'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the module's own code may raise anything while importing
        raise RewardError(f"reward function {path!r}: cannot import module {module_name!r}: "
                          f"{type(exc).__name__}: {exc}") from exc
    if not hasattr(module, attr):
        raise RewardError(f"reward function {path!r}: module {module_name!r} has no attribute {attr!r}")
    fn = getattr(module, attr)
    if not callable(fn):
        raise RewardError(f"reward function {path!r}: {attr!r} is a {type(fn).__name__}, not callable")
    return fn


def metadata_columns(metadata: list[dict] | None, n: int) -> dict[str, list]:
    """Rows of metadata as one list per key, in first-seen key order; missing -> None."""
    rows = metadata if metadata is not None else [{}] * n
    keys = dict.fromkeys(key for row in rows for key in row)
    return {key: [row.get(key) for row in rows] for key in keys}


class FunctionReward:
    """Calls the function at `path` with TRL's reward-function keywords plus `options`."""

    def __init__(self, path: str, options: dict | None = None):
        self.path, self.options = path, dict(options or {})
        clash = [key for key in self.options if key in _RESERVED]
        if clash:
            raise RewardError(f"reward function {path!r}: options may not be named {clash}")
        self.fn = import_function(path)
        self.none_count = 0

    def __call__(self, prompts: list, completions: list, metadata: list[dict] | None = None) -> list[float]:
        columns = metadata_columns(metadata, len(prompts))
        clash = [key for key in columns if key in _RESERVED or key in self.options]
        if clash:
            raise RewardError(f"reward function {self.path!r}: metadata fields {clash} clash with "
                              "the prompts/completions arguments or with the source's options")
        try:
            values = self.fn(prompts=prompts, completions=completions, **columns, **self.options)
        except Exception as exc:
            given = ", ".join(["prompts", "completions", *columns, *self.options])
            raise RewardError(f"reward function {self.path!r} raised {type(exc).__name__}: {exc} "
                              f"(called with: {given})") from exc
        rewards, nones = to_rewards(values, len(prompts), f"reward function {self.path!r}")
        self.none_count += nones
        return rewards
