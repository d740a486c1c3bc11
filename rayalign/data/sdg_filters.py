"""Filters for synthetic data: the rule checks and the hooks for a judge and a verifier.

An item is a dict with a string `instruction` and, optionally, an `answer` (SFT) or a
`chosen` and a `rejected` answer (preference). A filter has a `name` and a `check(item)`
that returns a `Verdict`: passed, or rejected with a reason a person can read; either may
carry a score (the judge's number, the highest ROUGE-L, ...). Stateful filters (novelty,
near-duplicates: rayalign/data/sdg_dedup.py; embeddings: rayalign/data/sdg_embed.py) also
`remember(item)` once the whole chain keeps it (rayalign/data/sdg_chain.py); the rule filters
here forget everything. A filter may `prepare(items)` a chunk at once before the checks.

    format       instruction is a non-empty string; answers, when present, are strings
    length       words in the instruction and in each answer within bounds
    blacklist    the instruction names something a text model cannot do (self-instruct's list)
    refusal      an answer opens with "I'm sorry", "As an AI", "I cannot", ...
    repetition   an answer is the instruction again, or mostly a copy of it
    verify       a user function item -> True / False / None (not verifiable: passes)
    margin       a preference item's two answers got different scores
    quality      a score per item (judge, reward model, or precomputed under a key) >= threshold

Words are counted with `str.split()`; text is compared on `words()`, rouge-score's tokens
(lowercased runs of a-z and 0-9), so scores here match rouge-score's ROUGE-L.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from rapidfuzz.distance import LCSseq

ANSWER_FIELDS = ("answer", "chosen", "rejected")

# self-instruct's blacklist (Wang et al. 2023, bootstrap_instructions.py): tasks a language
# model cannot carry out in text.
DEFAULT_BLACKLIST = ("image", "images", "graph", "graphs", "picture", "pictures", "file", "files",
                     "map", "maps", "draw", "plot", "go to", "video", "audio", "music",
                     "flowchart", "diagram")

DEFAULT_REFUSALS = ("I'm sorry", "I am sorry", "I apologize", "I apologise", "As an AI",
                    "as a language model", "as an AI language model", "I cannot", "I can't",
                    "I can not", "I'm unable to", "I am unable to", "I'm not able to",
                    "I am not able to", "I won't be able to")

_TOKEN = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    """rouge-score's tokens without a stemmer: lowercased runs of a-z and 0-9 (other
    characters, accented letters included, separate tokens and are dropped)."""
    return _TOKEN.findall(text.lower())


@dataclass(frozen=True)
class Verdict:
    """What a filter says about one item: `reason` is None when it passes."""

    reason: str | None = None
    score: float | None = None

    @property
    def passed(self) -> bool:
        return self.reason is None


PASS = Verdict()


def reject(reason: str, score: float | None = None) -> Verdict:
    return Verdict(reason=reason, score=score)


class Filter:
    """One filter. Subclasses set `name` and implement `check`; stateful ones `remember`."""

    name = "filter"

    def check(self, item: dict) -> Verdict:
        raise NotImplementedError

    def prepare(self, items: list) -> None:
        """Called with each chunk of items before they are checked (seeds: remembered) one by
        one, for work done better in batches (the embedding filter embeds them); no-op by default."""

    def remember(self, item: dict) -> None:
        """Called for every item the whole chain keeps (and for seeds); no-op by default."""


def answers(item: dict, fields: Iterable[str] = ANSWER_FIELDS) -> list[tuple[str, str]]:
    """The (field, text) pairs of the answer fields this item has."""
    return [(f, item[f]) for f in fields if isinstance(item.get(f), str)]


class FormatFilter(Filter):
    """Counts malformed items (what a teacher returning garbage produces) instead of failing."""

    name = "format"

    def check(self, item: dict) -> Verdict:
        instruction = item.get("instruction")
        if not isinstance(instruction, str) or not instruction.strip():
            return reject("no instruction (missing, empty or not a string)")
        for field in ANSWER_FIELDS:
            if field in item and not isinstance(item[field], str):
                return reject(f"{field} is {type(item[field]).__name__}, not a string")
        if ("chosen" in item) != ("rejected" in item):
            return reject("a preference item needs both chosen and rejected")
        return PASS


class LengthFilter(Filter):
    """Words (`str.split()`) of the instruction and of each answer within [min, max]; None:
    unbounded. Defaults: self-instruct drops instructions of 3 words or fewer, or over 150."""

    name = "length"

    def __init__(self, min_instruction_words: int = 4, max_instruction_words: int | None = 150,
                 min_answer_words: int = 1, max_answer_words: int | None = None):
        self.instruction_bounds = (min_instruction_words, max_instruction_words)
        self.answer_bounds = (min_answer_words, max_answer_words)

    @staticmethod
    def _outside(n: int, bounds: tuple[int, int | None]) -> str | None:
        low, high = bounds
        if n < low:
            return f"{n} words < {low}"
        if high is not None and n > high:
            return f"{n} words > {high}"
        return None

    def check(self, item: dict) -> Verdict:
        problem = self._outside(len(item["instruction"].split()), self.instruction_bounds)
        if problem:
            return reject(f"instruction: {problem}")
        for field, text in answers(item):
            problem = self._outside(len(text.split()), self.answer_bounds)
            if problem:
                return reject(f"{field}: {problem}")
        return PASS


def _phrases_pattern(phrases: Iterable[str]) -> re.Pattern:
    """One case-insensitive regex matching any of the phrases as whole words."""
    phrases = sorted({p.strip() for p in phrases if p.strip()}, key=len, reverse=True)
    if not phrases:
        return re.compile(r"(?!x)x")  # matches nothing
    alternatives = "|".join(r"\s+".join(map(re.escape, p.split())) for p in phrases)
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


class BlacklistFilter(Filter):
    """The instruction contains a blacklisted word or phrase (whole words, any case)."""

    name = "blacklist"

    def __init__(self, blacklist: Iterable[str] = DEFAULT_BLACKLIST, fields: Iterable[str] = ("instruction",)):
        self.pattern = _phrases_pattern(blacklist)
        self.fields = tuple(fields)

    def check(self, item: dict) -> Verdict:
        for field in self.fields:
            text = item.get(field)
            match = self.pattern.search(text) if isinstance(text, str) else None
            if match:
                return reject(f"{field} contains blacklisted {' '.join(match.group(0).lower().split())!r}")
        return PASS


class RefusalFilter(Filter):
    """An answer refuses: one of `phrases` (whole words, any case, curly apostrophes too)
    within its first `window` characters, where refusals sit; None searches the whole answer.
    `fields` defaults to the answers a model is trained toward: `answer` and `chosen`."""

    name = "refusal"

    def __init__(self, phrases: Iterable[str] = DEFAULT_REFUSALS, window: int | None = 200,
                 fields: Iterable[str] = ("answer", "chosen")):
        self.pattern = _phrases_pattern(phrases)
        self.window = window
        self.fields = tuple(fields)

    def check(self, item: dict) -> Verdict:
        for field, text in answers(item, self.fields):
            head = text if self.window is None else text[: self.window]
            match = self.pattern.search(head.replace("\u2019", "'"))
            if match:
                return reject(f"{field} refuses: {match.group(0)!r}")
        return PASS


class RepetitionFilter(Filter):
    """An answer repeats the instruction: the same words, or at least `max_copied` of the
    answer's words are an in-order copy of the instruction (LCS / answer words), so an answer
    that restates the question and then answers it passes."""

    name = "repetition"

    def __init__(self, max_copied: float = 0.8, fields: Iterable[str] = ANSWER_FIELDS):
        self.max_copied = max_copied
        self.fields = tuple(fields)

    def check(self, item: dict) -> Verdict:
        instruction = words(item["instruction"])
        for field, text in answers(item, self.fields):
            answer = words(text)
            if not answer:
                continue
            if answer == instruction:
                return reject(f"{field} equals the instruction", 1.0)
            copied = LCSseq.similarity(instruction, answer) / len(answer)
            if copied >= self.max_copied:
                return reject(f"{field} is {copied:.0%} a copy of the instruction", copied)
        return PASS


class VerifyFilter(Filter):
    """The hook for a verifier: `verify(item)` returns True (pass), False (reject) or None
    (the item is not verifiable: pass, or reject when `required`). An exception rejects the item, its type and message
    in the reason, so a broken checker shows in the yield table rather than stopping a run."""

    def __init__(self, verify: Callable[[dict], bool | None], name: str = "verify", required: bool = False):
        self.verify = verify
        self.name = name
        self.required = required

    def check(self, item: dict) -> Verdict:
        try:
            ok = self.verify(item)
        except Exception as exc:  # noqa: BLE001 - the user's checker; reported per item
            return reject(f"verifier raised {type(exc).__name__}: {exc}")
        if ok is None:
            return reject("not verifiable (and verification is required)") if self.required else PASS
        return Verdict(score=1.0) if ok else reject("verifier returned False", 0.0)


class MarginFilter(Filter):
    """A preference item whose two answers were ranked by a score (`item["margin"]`: chosen's
    score minus rejected's) passes only when the margin is > `min_margin`: a tie says nothing
    about which answer is better. Items without a margin (SFT, hand-ranked) pass."""

    name = "margin"

    def __init__(self, min_margin: float = 0.0):
        self.min_margin = min_margin

    def check(self, item: dict) -> Verdict:
        margin = item.get("margin")
        if margin is None or margin > self.min_margin:
            return PASS if margin is None else Verdict(score=margin)
        return reject(f"the two answers scored {margin:.3g} apart: no preference", margin)


class QualityFilter(Filter):
    """The hook for a quality score: `score(item)` gives a number (a pointwise judge, a reward
    model, any callable); the item passes when it is >= `threshold`. Without `score`, the
    number is read from `item[key]`, for scores computed beforehand in batches. A missing
    score is an error; NaN rejects."""

    def __init__(self, score: Callable[[dict], float] | None = None, threshold: float = 0.5,
                 key: str = "quality", name: str = "quality"):
        self.score = score
        self.threshold = threshold
        self.key = key
        self.name = name

    def check(self, item: dict) -> Verdict:
        if self.score is not None:
            value = float(self.score(item))
        elif self.key in item:
            value = float(item[self.key])
        else:
            raise KeyError(f"{self.name}: item has no {self.key!r} score and no score function was given")
        if math.isnan(value):
            return reject("score is NaN", value)
        if value < self.threshold:
            return reject(f"score {value:.3g} < {self.threshold:g}", value)
        return Verdict(score=value)
