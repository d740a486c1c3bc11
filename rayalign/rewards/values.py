"""What every reward source must hand back: one finite number (or None) per completion."""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real


class RewardError(RuntimeError):
    """A reward source that cannot be built or called, or that returned something unusable."""


def to_rewards(values, n: int, source: str) -> tuple[list[float], int]:
    """`values` as n floats, None read as 0.0; returns (rewards, how many were None).

    Accepts any sequence (a list, a tuple, a numpy array or a torch tensor); anything else,
    a wrong length, or an entry that is not a finite real number or None is a RewardError
    naming `source` and the row index."""
    values = values.tolist() if hasattr(values, "tolist") else values
    if not isinstance(values, Sequence) or isinstance(values, (str, bytes)):
        raise RewardError(f"{source} returned {type(values).__name__}; expected a list of {n} numbers")
    if len(values) != n:
        raise RewardError(f"{source} returned {len(values)} rewards for {n} completions")
    rewards, nones = [], 0
    for index, value in enumerate(values):
        if value is None:
            nones += 1
            value = 0.0
        elif isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
            raise RewardError(f"{source}: row {index}: reward {value!r} ({type(value).__name__}) "
                              "is not a finite number or None")
        rewards.append(float(value))
    return rewards, nones
