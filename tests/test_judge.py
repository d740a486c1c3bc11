"""The AI critic's pure logic: prompts, the output grammar, parsing, and the order swap."""

from __future__ import annotations

import asyncio
import re

import pytest

from rayalign.rewards import judge


def test_prompts_carry_the_conversation_and_both_answers_in_the_given_order():
    messages = judge.pairwise_messages([{"role": "system", "content": "Be brief."},
                                        {"role": "user", "content": "2+2?"}], "four", "five")
    assert [m["role"] for m in messages] == ["system", "user"]
    task = messages[1]["content"]
    assert "[System]\nBe brief." in task and "[User]\n2+2?" in task
    assert task.index("<answer_a id=") < task.index("\nfour\n</answer_a id=") < task.index("<answer_b id=") \
        < task.index("\nfive\n</answer_b id=")
    pointwise = judge.pointwise_messages("2+2?", [{"role": "assistant", "content": "four"}])[1]["content"]
    assert "[User]\n2+2?" in pointwise and "\nfour\n</answer id=" in pointwise


@pytest.mark.parametrize("text, expected", [
    ("Rationale: right answer.\nScore: 9", (9, "right answer.")),
    ("Rationale: perfect\nScore: 10", (10, "perfect")),
    ("rationale: meh\nscore: 3 out of 10", (3, "meh")),
    ("I think it is fine.", (None, "I think it is fine.")),
    ("Rationale: bad\nScore: 0", (None, "bad")),
])
def test_parse_score(text, expected):
    assert judge.parse_score(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("Rationale: A is correct.\nVerdict: A", ("first", "A is correct.")),
    ("Rationale: B is right\nVerdict: B", ("second", "B is right")),
    ("Rationale: same\nVerdict: tie", ("tie", "same")),
    ("Rationale: unsure\nVerdict: maybe", (None, "unsure")),
])
def test_parse_verdict(text, expected):
    assert judge.parse_verdict(text) == expected


def test_the_grammars_accept_exactly_the_parseable_replies():
    assert re.fullmatch(judge.POINTWISE_GRAMMAR, "Rationale: ok\nScore: 10")
    assert not re.fullmatch(judge.POINTWISE_GRAMMAR, "Rationale: ok\nScore: 11")
    assert not re.fullmatch(judge.POINTWISE_GRAMMAR, "Rationale: " + "x" * (judge.RATIONALE_CHARS + 1) + "\nScore: 5")
    assert re.fullmatch(judge.PAIRWISE_GRAMMAR, "Rationale: ok\nVerdict: tie")
    assert not re.fullmatch(judge.PAIRWISE_GRAMMAR, "Rationale: two\nlines\nVerdict: A")
    assert not re.fullmatch(judge.PAIRWISE_GRAMMAR, "Rationale: caf\u00e9\nVerdict: A")  # ASCII: a token a char
    longest = "Rationale: " + "x" * judge.RATIONALE_CHARS + "\nVerdict: tie"
    assert re.fullmatch(judge.PAIRWISE_GRAMMAR, longest) and len(longest) == judge.REPLY_MAX_TOKENS


@pytest.mark.parametrize("original, swapped, verdict", [
    ("first", "second", "a"),    # a wins in both orders
    ("second", "first", "b"),
    ("first", "first", "tie"),   # position bias: the first answer always wins
    ("second", "second", "tie"),
    ("first", "tie", "a"),
    ("tie", "first", "b"),
    (None, "second", "a"),       # one order unparsed: the other decides
    ("tie", "tie", "tie"),
    (None, None, "tie"),
])
def test_combine_orders(original, swapped, verdict):
    assert judge.combine_orders(original, swapped) == verdict


def scripted(replies: dict[str, str]):
    """A generate function that answers by the first answer shown (A), and records the calls."""
    calls = []

    async def generate(conversations):
        calls.append(conversations)
        out = []
        for conversation in conversations:
            task = conversation[-1]["content"]
            opening = "<answer_a id=" if "<answer_a id=" in task else "<answer id="
            shown_first = task.split(opening, 1)[1].split("\n")[1]
            out.append(replies[shown_first])
        return out

    return generate, calls


def test_pairwise_judging_asks_both_orders_in_one_batch():
    # A judge that prefers "Paris" wherever it is shown, and one that always picks position A.
    fair, calls = scripted({"Paris": "Rationale: correct\nVerdict: A", "Rome": "Rationale: wrong\nVerdict: B"})
    result = asyncio.run(judge.judge_pairwise(fair, ["Capital of France?"] * 2, ["Paris", "Rome"], ["Rome", "Paris"]))
    assert len(calls) == 1 and len(calls[0]) == 4
    assert result.verdicts == ["a", "b"]
    assert result.order_verdicts == [("first", "second"), ("second", "first")]
    assert result.rationales[0] == ("correct", "wrong")
    biased, _ = scripted({"Paris": "Rationale: x\nVerdict: A", "Rome": "Rationale: x\nVerdict: A"})
    assert asyncio.run(judge.judge_pairwise(biased, ["q"], ["Paris"], ["Rome"])).verdicts == ["tie"]


def test_pointwise_rewards_are_scores_scaled_to_0_1_and_unparsed_scores_0():
    generate, _ = scripted({"good": "Rationale: fine\nScore: 10", "ok": "Rationale: so so\nScore: 4",
                            "junk": "no idea"})
    result = asyncio.run(judge.judge_pointwise(generate, ["q"] * 3, ["good", "ok", "junk"]))
    assert result.rewards == [1.0, pytest.approx(1 / 3), 0.0]
    assert result.scores == [10, 4, None]
    assert result.rationales == ["fine", "so so", "no idea"]
    with pytest.raises(ValueError, match="2 prompts but 1 completions"):
        asyncio.run(judge.judge_pointwise(generate, ["q", "q"], ["good"]))
