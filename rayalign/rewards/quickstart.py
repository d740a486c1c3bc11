"""The shipped rewards of the quickstart RL task, for recipes as `rayalign.rewards.quickstart:<fn>`.

`constraint_check` and `graded` read the `check` spec that every quickstart record carries
(see rayalign/data/quickstart.py) and give None to a row without one (counted as 0.0).
`on_topic` reads the record's reference answer (`reference`, the assistant turn of the data).

- `constraint_check`: 1.0 if the completion obeys its rule, else 0.0.
- `graded`: also asks whether the completion hedges (one of HEDGES, as whole words, any
  letter case), and pays on a four-step scale: correct and confident > correct and unsure
  > wrong and unsure > wrong and confident, so a wrong answer costs least when it admits doubt.
- `on_topic`: the share of the reference answer's content words that the completion says too
  (a word counts when the completion has a word with the same first five letters, so "sleeps"
  matches "sleep"). A rule check alone pays "Yes." for "start with Yes" and "Cats." for "at most
  five words"; mixed in, this pays for answering what was asked.
"""

from __future__ import annotations

import re

from rayalign.data.quickstart import check as obeys

# "not sure" also finds "I'm not sure"; words are matched whole, so "unlikely" is no hedge.
HEDGES = (
    "I think", "I believe", "I guess", "I suppose", "maybe", "perhaps", "probably", "possibly",
    "likely", "might be", "not sure", "not certain", "if I recall", "as far as I know",
)
_HEDGE = re.compile(r"\b(?:" + "|".join(r"\s+".join(map(re.escape, h.split())) for h in HEDGES) + r")\b",
                    re.IGNORECASE)


# Words that carry no content of an answer ("yes" is what start-with-Yes asks for, not content).
STOPWORDS = frozenset("""
a an the is are was were be been am do does did of in on at to for from by with and or but not no yes it its
this that these those there their they them he she his her we our you your i my me as so than then very can
could will would should may might has have had about into over under up down out one some any all most
more just only also
""".split())
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def content_words(text: str) -> set[str]:
    return {word for word in _WORD.findall(text.lower()) if word not in STOPWORDS}


def on_topic(prompts: list, completions: list[str], reference: list[str | None], **_) -> list[float | None]:
    """The share of the reference's content words (first five letters) that the completion has."""
    scores = []
    for completion, answer in zip(completions, reference):
        wanted = {word[:5] for word in content_words(answer)} if answer else set()
        said = {word[:5] for word in content_words(completion)}
        scores.append(len(wanted & said) / len(wanted) if wanted else None)
    return scores


def hedges(completion: str) -> bool:
    """Whether the completion contains one of HEDGES."""
    return _HEDGE.search(completion) is not None


def constraint_check(prompts: list, completions: list[str], check: list[dict | None], **_) -> list[float | None]:
    return [None if spec is None else float(obeys(spec, completion))
            for spec, completion in zip(check, completions)]


def graded(prompts: list, completions: list[str], check: list[dict | None], correct_confident: float = 1.0,
           correct_unsure: float = 0.5, wrong_unsure: float = -0.5, wrong_confident: float = -2.0,
           **_) -> list[float | None]:
    scale = {(True, False): correct_confident, (True, True): correct_unsure,
             (False, True): wrong_unsure, (False, False): wrong_confident}
    return [None if spec is None else scale[obeys(spec, completion), hedges(completion)]
            for spec, completion in zip(check, completions)]
