"""The shipped rewards of the quickstart RL task, for recipes as `rayalign.rewards.quickstart:<fn>`.

Both read the `check` spec that every quickstart record carries (see
rayalign/data/quickstart.py) and give None to a row without one (counted as 0.0).

- `constraint_check`: 1.0 if the completion obeys its rule, else 0.0.
- `graded`: also asks whether the completion hedges (one of HEDGES, as whole words, any
  letter case), and pays on a four-step scale: correct and confident > correct and unsure
  > wrong and unsure > wrong and confident, so a wrong answer costs least when it admits doubt.
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
