"""The AI labeler: which of two answers is better, asked in both orders, read as a soft label.

The labeler sees a preamble (a rubric, or a constitution's principles), optional few-shot
examples (earlier turns of the chat), then the conversation and the two answers as Answer A
and Answer B. Its reply is "Verdict: A" or "Verdict: B", after one line "Rationale: ..."
when `rationale` is on (chain of thought: the rationale is generated first, then the reply is
continued with "Verdict:"). The verdict is read at its position from the top log-probs of
the tokens "A" and "B" (a soft choice), or from the letter alone when the labeler reports
no log-probs (a hard choice); a reply with no verdict makes no choice, counted by the caller.

Every pair is judged as (a, b) and, with `both_orders`, as (b, a); P(a is better) averages
the two (rayalign/algorithms/ai_feedback.py), which cancels a bias for either position.

The conversation and the answers are shown fenced (rayalign.rewards.fence), one tag id
per chat; a verdict is read from the last "Verdict:" of the reply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rayalign.algorithms.ai_feedback import (combine_hard, consistent, option_probabilities, read_position,
                                             soft_preference)
from rayalign.rewards.feedback import RATIONALE, replies_at
from rayalign.rewards.fence import fence_id, fenced, last_match
from rayalign.rewards.judge import REMINDER, SYSTEM, completion_text, fenced_conversation

DEFAULT_RUBRIC = ("A better answer does exactly what the user asked: it is correct, it answers the question "
                  "that was asked, and it follows every instruction about format and length.")
CHOICES = ("A", "B")
VERDICT = "Verdict:"
_VERDICT_TEXT = re.compile(r"Verdict:\s*([AB])\b", re.IGNORECASE)


@dataclass
class Example:
    """A worked example shown before the real question."""

    prompt: object
    a: str
    b: str
    verdict: str            # "A" or "B"
    rationale: str | None = None


@dataclass
class Ask:
    """How the labeler is asked."""

    preamble: str = DEFAULT_RUBRIC
    examples: list[Example] = field(default_factory=list)
    rationale: bool = False
    rationale_max_tokens: int = 64
    top_logprobs: int = 20


@dataclass
class Judgement:
    """One order's verdict: which position won, P(the first shown is better) when the
    labeler gave log-probs, the rationale, and the reply as written."""

    choice: str | None          # "first", "second", or None: no verdict in the reply
    p_first: float | None
    rationale: str
    reply: str


@dataclass
class PairLabel:
    p_a: float | None           # P(a is better): soft when there are log-probs, else from the choices
    soft: bool
    orders: list[Judgement]     # (a, b) first, then (b, a) when both orders are asked
    consistent: bool | None     # the two orders named the same answer


def question(ask: Ask, prompt, first, second, id_: str) -> str:
    how = (f'First write one line "{RATIONALE} <one sentence>", then one line "{VERDICT} A" or "{VERDICT} B".'
           if ask.rationale else f'Reply with "{VERDICT} A" or "{VERDICT} B".')
    return (f"{ask.preamble}\n\n{fenced_conversation(prompt, id_)}\n\n"
            f"{fenced('answer_a', completion_text(first), id_)}\n\n{fenced('answer_b', completion_text(second), id_)}"
            f"\n\n{REMINDER.format(id=id_)}\nWhich answer is better, A (answer_a) or B (answer_b)? {how}")


def _example_reply(ask: Ask, example: Example) -> str:
    thought = f"{RATIONALE} {example.rationale or 'Answer ' + example.verdict + ' does what was asked.'}\n"
    return (thought if ask.rationale else "") + f"{VERDICT} {example.verdict}"


def messages(ask: Ask, prompt, first, second, id_: str | None = None) -> list[dict]:
    """The chat up to the labeler's reply (which the caller starts or leaves to the model);
    `id_` is the tags' id (by default `fence_id` of what is judged)."""
    id_ = id_ or fence_id(prompt, first, second)
    chat = [{"role": "system", "content": SYSTEM}]
    for example in ask.examples:
        chat += [{"role": "user", "content": question(ask, example.prompt, example.a, example.b, id_)},
                 {"role": "assistant", "content": _example_reply(ask, example)}]
    return chat + [{"role": "user", "content": question(ask, prompt, first, second, id_)}]


def _rationale_text(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line.removeprefix(RATIONALE).strip()


def judge(feedback, ask: Ask, shown: list[tuple]) -> list[Judgement]:
    """A verdict for each (prompt, first, second), in one batch per phase."""
    chats = [messages(ask, *item) for item in shown]
    replies = replies_at(feedback, chats, VERDICT, ask.rationale, ask.rationale_max_tokens, ask.top_logprobs)
    return [_read(reply, prefix, prefix + reply.text) for prefix, reply in replies]


def _read(reply, prefix: str, whole: str) -> Judgement:
    rationale = _rationale_text(whole) if RATIONALE.lower() in whole.lower() else ""
    position = read_position(prefix, reply.tokens, VERDICT) if reply.tokens else None
    p_first = None
    if position is not None and position < len(reply.top_logprobs):
        probabilities = option_probabilities(reply.top_logprobs[position], CHOICES)
        p_first = probabilities["A"] if probabilities else None
    match = last_match(_VERDICT_TEXT, whole)  # the labeler's own verdict comes after any it quotes
    letter = match.group(1).upper() if match else None
    if p_first is not None and p_first != 0.5:  # the likelier letter, even when another token was written
        letter = "A" if p_first > 0.5 else "B"
    choice = {"A": "first", "B": "second"}.get(letter)
    return Judgement(choice, p_first, rationale, reply.text)


def label_pairs(feedback, ask: Ask, prompts: list, a: list, b: list, both_orders: bool = True) -> list[PairLabel]:
    """P(a is better) for each pair, with each order's judgement kept."""
    forward = judge(feedback, ask, list(zip(prompts, a, b)))
    backward = judge(feedback, ask, list(zip(prompts, b, a))) if both_orders else [None] * len(prompts)
    labels = []
    for one, other in zip(forward, backward):
        orders = [one] + ([other] if other else [])
        soft = all(j.p_first is not None for j in orders)
        if soft:
            p_a = soft_preference(one.p_first, other.p_first if other else None)
        else:
            p_a = combine_hard(one.choice, other.choice if other else None)
        labels.append(PairLabel(p_a, soft, orders, consistent(one.choice, other.choice) if other else None))
    return labels
