"""The statistics of an evaluation: means with 95% intervals, and pass@k. Pure Python math.

Scores of one source that are all 0 or 1 get a Wilson score interval (honest near 0 and 1,
where a normal interval would leave [0, 1]); other scores a normal interval on the mean.
With several samples per prompt, the unit is the prompt: its samples are averaged first, so
an interval reflects how many prompts were asked, not how often each was retried.
"""

from __future__ import annotations

import math
import statistics

Z95 = 1.959963984540054


def is_binary(values: list[float]) -> bool:
    return bool(values) and all(v in (0.0, 1.0) for v in values)


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion successes/n."""
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def interval(values: list[float], binary: bool | None = None) -> dict:
    """{"mean", "low", "high", "n"}: the mean of `values` with its 95% interval."""
    n = len(values)
    if n == 0:
        return {"mean": math.nan, "low": math.nan, "high": math.nan, "n": 0}
    mean = statistics.fmean(values)
    if binary if binary is not None else is_binary(values):
        low, high = wilson(sum(values), n)
    else:
        half = Z95 * statistics.stdev(values) / math.sqrt(n) if n > 1 else math.inf
        low, high = mean - half, mean + half
    return {"mean": mean, "low": min(low, mean), "high": max(high, mean), "n": n}  # float noise never flips them


def prompt_interval(per_prompt: list[list[float]]) -> dict:
    """The interval of the mean over prompts of each prompt's mean over its samples; with one
    sample each of 0/1 scores, the Wilson interval."""
    binary = all(len(row) == 1 for row in per_prompt) and is_binary([row[0] for row in per_prompt])
    return interval([statistics.fmean(row) for row in per_prompt], binary=binary)


def pass_at_k(n: int, correct: int, k: int) -> float:
    """The chance that at least one of k samples drawn from n (of which `correct` are right)
    is right: 1 - C(n - c, k) / C(n, k), the unbiased estimator of Chen et al. (2021)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per prompt, got {n}")
    if n - correct < k:
        return 1.0
    return 1.0 - math.comb(n - correct, k) / math.comb(n, k)


def pass_at_ks(per_prompt: list[list[float]]) -> dict[str, float]:
    """pass@k for k = 1, 2, 4, ... up to the samples per prompt, averaged over prompts
    (the scores must be 0/1)."""
    n = min(len(row) for row in per_prompt)
    ks = [k for k in (2 ** i for i in range(n.bit_length())) if k <= n]
    return {str(k): statistics.fmean(pass_at_k(len(row), int(sum(row)), k) for row in per_prompt) for k in ks}
