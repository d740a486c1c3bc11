"""The quickstart task's verifier for synthetic data: which rule a task written in words asks
for, and whether an answer obeys it.

`constraint_in(text)` reads a task's wording ("Answer in at most 6 words.", "Start your
answer with 'Yes'.", "What is 12 + 30? Reply with just the number.") and returns the check
spec that rayalign.data.quickstart's `check` verifies, or None when the task asks for no rule
this module knows. A capital city asked "in one word" is checked as one word: the verifier
knows the format, not the world. `verify_item` is the hook of `sdg.filters.verify`
(`rayalign.data.quickstart_verify:verify_item`): None for a task it cannot verify, else
whether the item's answer (a preference item's chosen answer) obeys the rule.
"""

from __future__ import annotations

import re

from rayalign.data.quickstart import check

_QUOTED = r"""['"\u2018\u201c]([A-Za-z]+)['"\u2019\u201d]"""
_RULES = (
    (re.compile(r"(\d+)\s*(?:\+|plus)\s*(\d+)|\badd\s+(\d+)\s+(?:and|to)\s+(\d+)|\bsum of\s+(\d+)\s+and\s+(\d+)",
                re.IGNORECASE),
     lambda m: {"type": "number", "answer": sum(int(g) for g in m.groups() if g)}),
    (re.compile(r"\b(?:start|begin|lead)\w*\s+(?:\w+\s+){0,3}with\s+(?:the\s+word\s+)?" + _QUOTED, re.IGNORECASE),
     lambda m: {"type": "starts_with", "prefix": m.group(1)}),
    (re.compile(r"\b(?:include|includes|including|use|uses|using|contain|contains|containing)\s+the\s+word\s+"
                + _QUOTED, re.IGNORECASE),
     lambda m: {"type": "include_word", "word": m.group(1)}),
    (re.compile(r"\b(?:at most|no more than|up to|fewer than|or fewer|maximum of)\s+(\d+)\s+words?\b"
                r"|\b(\d+)\s+words?\s+or\s+(?:fewer|less)\b", re.IGNORECASE),
     lambda m: {"type": "max_words", "n": int(m.group(1) or m.group(2))}),
    (re.compile(r"\blower[- ]?case\b|\bno capital", re.IGNORECASE), lambda m: {"type": "lowercase"}),
    (re.compile(r"\b(?:one|a single)[- ]word\b", re.IGNORECASE), lambda m: {"type": "max_words", "n": 1}),
)


def constraint_in(text: str) -> dict | None:
    """The check spec the task's wording asks for (the first rule found), or None."""
    for pattern, spec in _RULES:
        match = pattern.search(text)
        if match:
            return spec(match)
    return None


def verify_item(item: dict) -> bool | None:
    """None when the task names no known rule; else whether its answer obeys the rule."""
    spec = constraint_in(item.get("instruction", ""))
    answer = item.get("answer", item.get("chosen"))
    if spec is None or not isinstance(answer, str):
        return None
    return check(spec, answer)
