"""AI-labelled preference data: what goes in, what comes out, and how good the labels are.

In: a file of pairs, `{"prompt", "chosen", "rejected"}` (TRL's preference format; the
labels are the reference, and the labeler sees the pair in a seeded random order) or
`{"prompt", "a", "b"}` (unlabelled); or a file of prompts for the policy to answer (any
format rayalign/data/prompts.py reads).

Out, one row per pair in `labels.jsonl`: the pair as shown (`a`, `b`), `p_a` (P(a is better),
soft from the choice tokens' log-probs averaged over both orders, else from the letters),
each order's judgement (choice, P(first), rationale, reply), position consistency, the
reference label when there is one, and why a pair was skipped. From those rows, preference
sets in TRL's format that `rayalign rm` and `rayalign dpo` read, each row with `soft_label`
(P(chosen is better)), the rationales, `position_consistent` and the labeler as provenance:

    preferences.jsonl         both orders, soft labels (the dataset to use)
    preferences_hard.jsonl    both orders, letters only: agreeing orders 1.0, disagreeing 0.5
    preferences_single.jsonl  the first order's letter alone (no swap): what the swap corrects
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from rayalign.algorithms.ai_feedback import agreement, combine_hard, position_stats
from rayalign.data.formats import PREFERENCE, PROMPT_ONLY, load_examples
from rayalign.data.prompts import PROMPT_FORMATS
from rayalign.data.preference import split_pair
from rayalign.data.readers import DataError

VARIANTS = {"preferences.jsonl": "soft", "preferences_hard.jsonl": "hard", "preferences_single.jsonl": "single"}


@dataclass
class Pair:
    index: int
    prompt: object
    a: object
    b: object
    reference: float | None = None   # 1: a is better, 0: b, None: unknown
    source: str = ""
    line: int = 0
    metadata: dict | None = None


def read_pairs(path: str, seed: int) -> list[Pair] | None:
    """The file's pairs, or None when it holds prompts (for the policy to answer)."""
    fmt, rows = load_examples(path, (PREFERENCE, *PROMPT_FORMATS))
    pairs = []
    for index, row in enumerate(rows):
        if fmt == PREFERENCE:
            prompt, chosen, rejected = split_pair(row)
            swap = random.Random(f"{seed}:{index}").random() < 0.5
            a, b = (rejected, chosen) if swap else (chosen, rejected)
            pairs.append(Pair(index, prompt, a, b, 0.0 if swap else 1.0, row.source, row.line))
        elif fmt == PROMPT_ONLY and ("a" in row.fields or "b" in row.fields):
            for field in ("a", "b"):
                if not isinstance(row.fields.get(field), (str, list)) or not row.fields[field]:
                    raise row.error(field, "an unlabelled pair needs answers `a` and `b` (text or messages)")
            pairs.append(Pair(index, row.fields["prompt"], row.fields["a"], row.fields["b"], None, row.source,
                              row.line))
        else:
            return None
    return pairs


def read_examples(path: str) -> list[dict]:
    """Few-shot examples for the labeler: rows of prompt, a, b, verdict (A or B), rationale?"""
    from rayalign.data.readers import read_rows

    examples = []
    for row in read_rows(path):
        for field in ("prompt", "a", "b"):
            if not isinstance(row.fields.get(field), (str, list)) or not row.fields[field]:
                raise row.error(field, "missing: a few-shot example needs prompt, a, b and verdict")
        if row.fields.get("verdict") not in ("A", "B"):
            raise row.error("verdict", f"expected \"A\" or \"B\", got {row.fields.get('verdict')!r}")
        examples.append({key: row.fields.get(key) for key in ("prompt", "a", "b", "verdict", "rationale")})
    if not examples:
        raise DataError(path, None, None, "no few-shot examples")
    return examples


def label_row(pair: Pair, label, labeler: str, preamble: str) -> dict:
    """One line of labels.jsonl."""
    names = ("ab", "ba")
    return {
        "index": pair.index, "prompt": pair.prompt, "a": pair.a, "b": pair.b,
        "p_a": label.p_a, "soft": label.soft, "consistent": label.consistent, "reference": pair.reference,
        "judgements": [{"order": names[i], "choice": j.choice, "p_first": j.p_first, "rationale": j.rationale,
                        "reply": j.reply} for i, j in enumerate(label.orders)],
        "labeler": labeler, "rubric": preamble, "source": {"file": pair.source, "line": pair.line},
        "skipped": None if label.p_a is not None else "the labeler gave no verdict in either order",
    }


def skipped_row(pair: Pair, reason: str) -> dict:
    return {"index": pair.index, "prompt": pair.prompt, "a": pair.a, "b": pair.b, "reference": pair.reference,
            "source": {"file": pair.source, "line": pair.line}, "skipped": reason}


def _choices(row: dict) -> list:
    return [j["choice"] for j in row["judgements"]]


def variant_label(row: dict, variant: str) -> float | None:
    """P(a is better) in one preference set: soft (both orders), hard (both orders, letters),
    single (the first order's letter)."""
    if variant == "soft":
        return row["p_a"]
    choices = _choices(row)
    if variant == "single":
        return combine_hard(choices[0], None)
    return combine_hard(choices[0], choices[1] if len(choices) > 1 else None)


def preference_rows(rows: list[dict], variant: str, drop_disagreeing: bool) -> list[dict]:
    """A preference set in TRL's format, with soft_label and provenance."""
    out = []
    for row in rows:
        if row.get("skipped"):
            continue
        if drop_disagreeing and variant != "single" and row["consistent"] is False:
            continue
        p_a = variant_label(row, variant)
        if p_a is None:
            continue
        a_first = p_a >= 0.5
        out.append({"prompt": row["prompt"], "chosen": row["a"] if a_first else row["b"],
                    "rejected": row["b"] if a_first else row["a"], "soft_label": max(p_a, 1 - p_a),
                    "rationales": [j["rationale"] for j in row["judgements"] if j["rationale"]],
                    "position_consistent": row["consistent"], "labeler": row["labeler"], "rubric": row["rubric"],
                    "label_variant": variant})
    return out


def figures(rows: list[dict]) -> dict:
    """How the labels came out: counts, position bias and consistency, and agreement with the
    reference labels without the swap (first order alone) and with it (letters, soft)."""
    labelled = [r for r in rows if not r.get("skipped")]
    reference = [r["reference"] for r in labelled]
    stats = position_stats([tuple((_choices(r) + [None])[:2]) for r in labelled])
    return {
        "pairs": len(rows), "labelled": len(labelled), "skipped": len(rows) - len(labelled),
        "soft": sum(1 for r in labelled if r["soft"]),
        "disagreeing_orders": sum(1 for r in labelled if r["consistent"] is False),
        **stats,
        "agreement_single_order": agreement([variant_label(r, "single") for r in labelled], reference),
        "agreement_both_orders_hard": agreement([variant_label(r, "hard") for r in labelled], reference),
        "agreement_both_orders_soft": agreement([r["p_a"] for r in labelled], reference),
    }


def headline_figures(figures_: dict) -> dict[str, float]:
    """The figures as one flat table of numbers (for the run report); unknown ones left out."""
    flat = {key: value for key, value in figures_.items() if isinstance(value, (int, float))}
    for key, value in figures_.items():
        if isinstance(value, dict) and value.get("agreement") is not None:
            flat[key] = value["agreement"]
            flat[f"{key}_pairs"] = value["pairs"]
    return flat


def card(figures_: dict, about: dict) -> str:
    """The dataset card (Markdown): where the labels come from and how good they are."""
    def share(value):
        return "n/a" if value is None else f"{value:.3f}"

    lines = [f"# AI-labelled preferences: {about['name']}", "",
             f"- labeler: `{about['labeler']}`", f"- input: `{about['input']}`",
             f"- asked: both orders = {about['both_orders']}, rationale first = {about['rationale']}, "
             f"few-shot examples = {about['examples']}",
             f"- preamble: {about['preamble']}", "",
             "| figure | value |", "|---|---|",
             f"| pairs / labelled / skipped | {figures_['pairs']} / {figures_['labelled']} / {figures_['skipped']} |",
             f"| soft labels (choice-token log-probs) | {figures_['soft']} |",
             f"| first position wins (position bias; 0.5 is none) | {share(figures_['first_position_wins'])} |",
             f"| position consistency (both orders name the same answer) | "
             f"{share(figures_['position_consistency'])} |",
             f"| pairs whose orders disagree | {figures_['disagreeing_orders']} |"]
    for key, title in (("agreement_single_order", "agreement with reference, one order (no swap)"),
                       ("agreement_both_orders_hard", "agreement with reference, both orders, letters"),
                       ("agreement_both_orders_soft", "agreement with reference, both orders, soft")):
        result = figures_[key]
        lines.append(f"| {title} | {share(result['agreement'])} (n={result['pairs']}, ties {result['ties']}) |")
    lines += ["", "Ties count half in agreement. Files: " + ", ".join(f"`{name}` ({kind})"
                                                                     for name, kind in VARIANTS.items()), ""]
    return "\n".join(lines)
