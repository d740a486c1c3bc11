"""The numbers of AI feedback against hand-computed cases: choice probabilities, both-order
soft labels, expected scores (with 10 written as two tokens), agreement and position bias."""

from __future__ import annotations

import math

import pytest

from rayalign.algorithms.ai_feedback import (agreement, combine_hard, consistent, expected_score,
                                             option_probabilities, position_stats, read_position, soft_preference,
                                             to_unit_interval)


def test_options_add_up_token_variants_and_renormalise():
    top = {" A": math.log(0.5), "A": math.log(0.1), " B": math.log(0.2), " The": math.log(0.15)}
    # A: 0.5 + 0.1 = 0.6, B: 0.2 -> renormalised over the options: 0.75, 0.25
    assert option_probabilities(top, ("A", "B")) == pytest.approx({"A": 0.75, "B": 0.25})
    assert option_probabilities({" The": -0.1}, ("A", "B")) is None


def test_the_position_after_the_marker_skips_blank_tokens():
    assert read_position("Verdict:", [" ", "A", "\n"], "Verdict:") == 1
    assert read_position("", ["Rationale", ": fine", "\n", "Verdict", ":", " B"], "Verdict:") == 5
    assert read_position("", ["no", " verdict"], "Verdict:") is None
    assert read_position("Score:", [" "], "Score:") is None  # nothing follows the marker


def test_soft_preference_averages_the_two_orders():
    # P(first wins) 0.7 with (a, b) shown, 0.4 with (b, a) shown: a wins with 0.7 and with 1 - 0.4
    assert soft_preference(0.7, 0.4) == pytest.approx(0.65)
    # a labeler that always prefers the first position, equally in both orders: a tie
    assert soft_preference(0.8, 0.8) == pytest.approx(0.5)
    assert soft_preference(0.7, None) == pytest.approx(0.7) and soft_preference(None, None) is None


def test_hard_choices_combine_and_name_consistency():
    assert combine_hard("first", "second") == 1.0 and consistent("first", "second") is True   # a both times
    assert combine_hard("second", "first") == 0.0
    assert combine_hard("first", "first") == 0.5 and consistent("first", "first") is False    # position wins
    assert combine_hard("first", None) == 1.0 and consistent("first", None) is None
    assert combine_hard(None, None) is None


def test_expected_score_weights_every_score_token():
    top = {"7": math.log(0.5), " 8": math.log(0.3), "3": math.log(0.1), "x": math.log(0.1)}
    # renormalised over scores: 7: 5/9, 8: 3/9, 3: 1/9 -> (35 + 24 + 3) / 9
    assert expected_score(top) == pytest.approx(62 / 9)
    # "1" then "0" is 10: P("1") = 0.5, P("0" | "1") = 0.4 -> 1 with 0.3, 10 with 0.2; 9 with 0.5
    split = {"1": math.log(0.5), "9": math.log(0.5)}
    assert expected_score(split, ten_after_one=0.4) == pytest.approx(0.3 * 1 + 0.2 * 10 + 0.5 * 9)
    assert expected_score({"ten": -0.1}) is None
    assert to_unit_interval(1) == -1 and to_unit_interval(10) == 1 and to_unit_interval(5.5) == 0


def test_agreement_counts_ties_half_and_leaves_out_unknowns():
    labels = [0.9, 0.2, 0.5, 0.7, None]
    reference = [1.0, 1.0, 0.0, None, 1.0]
    # pair 1 right, pair 2 wrong, pair 3 a tie (half); pairs 4 and 5 have no reference / no label
    assert agreement(labels, reference) == {"agreement": 0.5, "pairs": 3, "ties": 1}


def test_position_stats_of_a_labeler_that_always_picks_the_first():
    always_first = [("first", "first")] * 4
    assert position_stats(always_first) == {"first_position_wins": 1.0, "judgements": 8,
                                            "position_consistency": 0.0, "pairs_with_both_orders": 4}
    fair = position_stats([("first", "second"), ("second", "first"), ("first", None)])
    assert fair["first_position_wins"] == pytest.approx(3 / 5) and fair["position_consistency"] == 1.0
