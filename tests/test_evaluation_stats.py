"""The statistics of an evaluation against hand-computed cases: Wilson and normal intervals,
per-prompt averaging, and the unbiased pass@k."""

from __future__ import annotations

import math

import pytest

from rayalign.evaluation.stats import interval, pass_at_k, pass_at_ks, prompt_interval, wilson


def test_wilson_interval_of_a_proportion():
    # 8 of 10: centre (0.8 + 1.92/10) / 1.384, half 1.96 * sqrt(0.016 + 0.00096) / 1.384 (z = 1.96)
    low, high = wilson(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-3) and high == pytest.approx(0.9433, abs=1e-3)
    low, high = wilson(0, 20)
    assert low == 0.0 and high == pytest.approx(0.1611, abs=1e-3)   # never below 0, not a zero-width interval


def test_interval_is_wilson_for_0_1_scores_and_normal_otherwise():
    binary = interval([1.0] * 8 + [0.0] * 2)
    assert binary["mean"] == pytest.approx(0.8) and binary["n"] == 10
    assert (binary["low"], binary["high"]) == pytest.approx(wilson(8, 10))
    values = [1.0, 2.0, 3.0, 4.0]
    normal = interval(values)
    half = 1.959963984540054 * math.sqrt(5 / 3) / 2   # sample std sqrt(5/3), n = 4
    assert normal["mean"] == 2.5 and normal["high"] - 2.5 == pytest.approx(half)
    assert math.isnan(interval([])["mean"])


def test_prompt_interval_averages_each_prompts_samples_first():
    per_prompt = [[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]
    result = prompt_interval(per_prompt)
    assert result["n"] == 3 and result["mean"] == pytest.approx(0.5)
    assert result == interval([0.5, 1.0, 0.0])


def test_pass_at_k_matches_the_combinatorial_formula():
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 2, 2) == pytest.approx(1 - 1 / 6)     # 1 - C(2,2)/C(4,2)
    assert pass_at_k(4, 1, 4) == 1.0 and pass_at_k(4, 0, 2) == 0.0
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 4)
    assert pass_at_ks([[1, 0, 0, 0], [0, 0, 0, 0]]) == pytest.approx({"1": 0.125, "2": 0.25, "4": 0.5})
