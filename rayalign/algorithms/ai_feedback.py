"""AI feedback as numbers: a labeler's choice and a critic's score read from log-probabilities.

Pure functions over what a generation engine or an OpenAI-compatible endpoint reports at
each generated position: the top log-probabilities as {token text: logprob}. No models, no I/O.

- `read_position` finds the position just after a marker ("Verdict:", "Score:") in a reply.
- `option_probabilities` turns one position's top log-probs into a distribution over the
  options ("A"/"B", "1".."10"): token texts are compared stripped of spaces, the matching
  probabilities added up and renormalised over the options.
- `soft_preference` averages P(a wins) over the two orders a pair was shown in, which
  cancels a labeler's position bias; `combine_hard` does the same with bare choices.
- `expected_score` is the probability-weighted mean score; `to_unit_interval` maps 1..10 to [-1, 1].
- `agreement` and `position_stats` measure a labeler against reference labels and for bias.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Top = dict[str, float]   # one position: token text -> log-probability


def read_position(prefix: str, tokens: Sequence[str], marker: str) -> int | None:
    """The index of the first non-blank token after the last `marker` in prefix + reply.

    `prefix` is text already in place before the reply (a prefilled assistant turn), `tokens`
    the reply's tokens as text. None when the marker never comes or nothing follows it."""
    text = prefix
    for index, token in enumerate(tokens):
        if token.strip() and text.rstrip().lower().endswith(marker.lower()):
            return index
        text += token
    return None


def option_probabilities(top: Top, options: Sequence[str]) -> dict[str, float] | None:
    """{option: probability} renormalised over the options, or None when no option is among
    the top tokens. Tokens " A" and "A" both count for option "A"."""
    mass = {option: 0.0 for option in options}
    for token, logprob in top.items():
        key = token.strip()
        if key in mass:
            mass[key] += math.exp(logprob)
    total = sum(mass.values())
    if total <= 0:
        return None
    return {option: value / total for option, value in mass.items()}


def soft_preference(first_wins_ab: float | None, first_wins_ba: float | None) -> float | None:
    """P(a is better) from P(the first shown wins) with (a, b) shown and with (b, a) shown:
    the mean over the orders that have a probability (a labeler that always picks the first
    answer gets 0.5). None when neither has one."""
    votes = [p for p in (first_wins_ab, None if first_wins_ba is None else 1 - first_wins_ba) if p is not None]
    return sum(votes) / len(votes) if votes else None


def combine_hard(choice_ab: str | None, choice_ba: str | None) -> float | None:
    """The same from bare choices ("first"/"second"/None per order): 1 or 0 when the orders
    agree, 0.5 when they disagree, the one order's choice when the other made none, None
    when neither did."""
    votes = [v for v in ({"first": 1.0, "second": 0.0}.get(choice_ab),
                         {"first": 0.0, "second": 1.0}.get(choice_ba)) if v is not None]
    return sum(votes) / len(votes) if votes else None


def consistent(choice_ab: str | None, choice_ba: str | None) -> bool | None:
    """Whether the two orders name the same answer (None when an order made no choice)."""
    if choice_ab is None or choice_ba is None:
        return None
    return choice_ab != choice_ba  # the same answer sits first in one order and second in the other


def expected_score(top: Top, scale: Sequence[int] = tuple(range(1, 11)),
                   ten_after_one: float | None = None) -> float | None:
    """The probability-weighted mean of the scores whose tokens are among the top ones.

    Tokenizers that split digits write 10 as "1" then "0": pass `ten_after_one`, the
    probability of "0" right after "1", and "1"'s mass is divided between 1 and 10."""
    probabilities = option_probabilities(top, [str(s) for s in scale])
    if probabilities is None:
        return None
    if ten_after_one is not None and "10" in probabilities and "1" in probabilities:
        one = probabilities["1"]
        probabilities["1"], probabilities["10"] = one * (1 - ten_after_one), probabilities["10"] + one * ten_after_one
    return sum(int(option) * p for option, p in probabilities.items())


def to_unit_interval(score: float, low: int = 1, high: int = 10) -> float:
    """Map [low, high] linearly onto [-1, 1]."""
    return 2 * (score - low) / (high - low) - 1


def agreement(labels: Sequence[float | None], reference: Sequence[float | None]) -> dict:
    """How often labels (P(a is better)) agree with reference labels (1: a, 0: b, 0.5 or
    None: no reference). A label above 0.5 names a, below names b; a tie (exactly 0.5)
    counts half. Pairs without a label or reference are left out and counted."""
    scored = [(p, r) for p, r in zip(labels, reference) if p is not None and r is not None and r != 0.5]
    hits = sum(1.0 if (p > 0.5) == (r > 0.5) and p != 0.5 else 0.5 if p == 0.5 else 0.0 for p, r in scored)
    ties = sum(1 for p, _ in scored if p == 0.5)
    return {"agreement": hits / len(scored) if scored else None, "pairs": len(scored), "ties": ties}


def position_stats(choices: Sequence[tuple[str | None, str | None]]) -> dict:
    """From each pair's choice in both orders: how often the first position wins (over every
    judgement that made a choice) and how often the two orders name the same answer."""
    made = [c for pair in choices for c in pair if c is not None]
    both = [consistent(a, b) for a, b in choices if a is not None and b is not None]
    return {"first_position_wins": sum(c == "first" for c in made) / len(made) if made else None,
            "judgements": len(made),
            "position_consistency": sum(both) / len(both) if both else None,
            "pairs_with_both_orders": len(both)}
