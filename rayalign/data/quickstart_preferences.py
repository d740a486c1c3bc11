"""The shipped quickstart preference pairs, for training reward models and DPO.

Prompts and chosen answers are the quickstart SFT records (`rayalign.data.quickstart`) of
the same split and seed, so the held-out split is the same and the chosen answer is the
reference answer, which passes `check`. The rejected answer fails `check` and is one of
three kinds, written by rule and from small hand-written phrasings below:

    kind                   score_rejected  what it is
    rambling                    0.5        the right answer in chatter that breaks the format
    wrong_answer                0.0        wrong content, in the asked-for format where the
                                           check allows it (a too-long wrong answer for max_words)
    refusal_or_off_topic       -0.5        an unhelpful reply

`score_chosen` is always 1.0; the rejected scores grade how far a reply falls short.
`include_word` has no rambling pairs: a reply that contains the right sentence contains the
word and passes its check. Kinds are dealt within each family in fixed shares (half and
half for include_word, more rambling elsewhere), so each kind is about a third of a split.
Wrong answers borrow only from items of the same split, so no eval item appears in train.
`python -m rayalign.data.quickstart_preferences` regenerates the files in `shipped/`.
"""

from __future__ import annotations

import random
import re
import string
from collections import Counter

from rayalign.data.quickstart import check, generate_with_items, split_items, write_splits
from rayalign.data.readers import SHIPPED_DIR

KINDS = ("wrong_answer", "rambling", "refusal_or_off_topic")
SCORE_CHOSEN = 1.0
SCORE_REJECTED = {"rambling": 0.5, "wrong_answer": 0.0, "refusal_or_off_topic": -0.5}
_KINDS_BY_TASK = {"include_word": ("wrong_answer", "refusal_or_off_topic")}

_RAMBLING = {
    "addition": (
        "Sure! Let me think. {a} + {b} is {s}, so the answer is {s}.",
        "The answer is {s}.",
        "Let's add them up: {a} plus {b} makes {s}. Easy!",
    ),
    "capital": (
        "The capital of {country} is {capital}.",
        "Sure! {capital} is the capital of {country}.",
        "That would be {capital}, a lovely city and the capital of {country}.",
    ),
    "max_words": (
        "Great question! There is a lot one could say about this, but to keep it short: {answer}",
        "Well, let me think about that for a moment before I answer. {answer}",
        "Sure! Here is my answer, and I really hope that it helps you: {answer}",
    ),
    "lowercase": (
        "Sure! Here is a sentence for you: {answer}",
        "Of course. {answer}",
        "Here you go: {answer} I hope you like it!",
    ),
    "start_with": (
        "Great question! {answer}",
        "Well, let me think about it. {answer}",
        "Sure! {answer}",
    ),
}
_WRONG = {
    "include_word": (
        "There is a lot to like about {topic}.",
        "I have always been curious about {topic}.",
        "Most people know something about {topic}.",
    ),
    "max_words": (
        "If I remember correctly, the answer is: {other}",
        "My answer would be this one, I think: {other}",
    ),
    "start_with": ("No, that is not true.", "No, not really.", "No, I don't think so."),
}
_REFUSALS = (  # at least 7 words, so that none passes a max_words check
    "I'm not sure, so I would rather not answer.",
    "I'm sorry, but I cannot help with that request.",
    "Sorry, I don't know the answer to that one.",
    "That is a hard one. Can we talk about something else?",
    "Let's talk about something else instead, like the weather today.",
)


def _wrong_answer(record: dict, item: tuple, split: str, rng: random.Random) -> str:
    task, answer = record["task"], record["messages"][-1]["content"]
    if task == "addition":
        total = record["check"]["answer"]
        return str(total + rng.choice([d for d in (-10, -2, -1, 1, 2, 10) if total + d >= 0]))
    if task == "capital":
        return rng.choice([c for _, c in split_items(task, split) if c != item[1]])
    if task == "include_word":
        return rng.choice(_WRONG[task]).format(topic=item[0])
    if task == "max_words":
        other = rng.choice([a for _, a in split_items(task, split) if a != answer])
        return rng.choice(_WRONG[task]).format(other=other)
    if task == "lowercase":
        return rng.choice((string.capwords, str.upper))(answer)
    return rng.choice(_WRONG[task])


def _rambling(record: dict, item: tuple, rng: random.Random) -> str:
    task, prompt = record["task"], record["messages"][0]["content"]
    fields = {"answer": record["messages"][-1]["content"]}
    if task == "addition":
        a, b = map(int, re.findall(r"\d+", prompt))  # in the prompt's order
        fields.update(a=a, b=b, s=a + b)
    elif task == "capital":
        fields.update(country=item[0], capital=item[1])
    return rng.choice(_RAMBLING[task]).format(**fields)


def _assign_kinds(tasks: list[str]) -> list[str]:
    """Deal kinds within each family in fixed shares, each pair taking the kind its family is
    furthest behind on (ties: the kind used least overall): include_word half and half, the
    other families a larger share of rambling, so that each kind is about a third of all pairs."""
    rambling = len(tasks) / 3 / max(1, len(tasks) - tasks.count("include_word"))
    shares = {"wrong_answer": (1 - rambling) / 2, "rambling": rambling,
              "refusal_or_off_topic": (1 - rambling) / 2}
    used, overall, kinds = Counter(), Counter(), []
    for task in tasks:
        allowed = _KINDS_BY_TASK.get(task, KINDS)
        share = shares if allowed == KINDS else dict.fromkeys(allowed, 1 / len(allowed))
        kind = min(allowed, key=lambda k: ((used[task, k] + 1) / share[k], overall[k],
                                           KINDS.index(k)))
        used[task, kind] += 1
        overall[kind] += 1
        kinds.append(kind)
    return kinds


def generate_preferences(split: str, n: int, seed: int = 0) -> list[dict]:
    """n preference pairs of `split` ("train" or "eval"): the quickstart records of that
    split and seed, each with a rejected answer that fails its check."""
    pairs = generate_with_items(split, n, seed)
    rng = random.Random(f"preferences:{split}:{seed}")
    records = []
    for (record, item), kind in zip(pairs, _assign_kinds([r["task"] for r, _ in pairs])):
        task, spec = record["task"], record["check"]
        chosen = record["messages"][-1]["content"]
        if kind == "refusal_or_off_topic":
            rejected = rng.choice(_REFUSALS)
        elif kind == "rambling":
            rejected = _rambling(record, item, rng)
        else:
            rejected = _wrong_answer(record, item, split, rng)
        if not check(spec, chosen) or check(spec, rejected) or chosen == rejected:
            raise AssertionError(f"{task}/{kind}: chosen {chosen!r}, rejected {rejected!r}, {spec}")
        records.append({"prompt": record["messages"][:-1],
                        "chosen": [{"role": "assistant", "content": chosen}],
                        "rejected": [{"role": "assistant", "content": rejected}],
                        "task": task, "check": spec, "score_chosen": SCORE_CHOSEN,
                        "score_rejected": SCORE_REJECTED[kind], "kind": kind})
    return records


def write_shipped_preferences(folder: str, seed: int = 0) -> dict[str, str]:
    """Write quickstart_prefs_{train,eval}.jsonl into folder; returns {split: path}."""
    return write_splits(folder, "quickstart_prefs", generate_preferences, seed)


if __name__ == "__main__":
    for split, path in write_shipped_preferences(SHIPPED_DIR).items():
        print(f"{split}: {path}")
