"""Turn review decisions into a dataset: `rayalign review import`.

Accepted, edited and written items become training records as `rayalign sdg generate` writes
them (rayalign/data/sdg_output.py: SFT as chat `messages`, preference as `prompt`, `chosen`,
`rejected` message lists), so the project's own loaders read them with the chat template. Rejected and undecided items are left out and
counted; a decision on an item that has changed since it was made counts as undecided.
Every row carries `provenance`: where its text came from (the generator as it was, a
person's edit, or an answer a person wrote), the teacher model, the filter scores and
verdict, the teacher's confidence, and who reviewed it when.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from rayalign.data.readers import DataError
from rayalign.review.items import Item, Review, outcome
from rayalign.data.sdg_output import provenance, training_record
from rayalign.runs import write_atomic

KEPT_OUTCOMES = ("accepted", "edited", "written")
FORMATS = ("sft", "preference", "auto")


def record_provenance(item: Item, decision: dict) -> dict:
    kept_as = outcome(item, decision)
    return provenance(item.record, None if kept_as == "accepted" else kept_as, reviewer=decision.get("reviewer"),
                      reviewed_at=decision.get("at"))


def dataset_row(item: Item, decision: dict) -> dict:
    """The item as the reviewer left it, as a training record."""
    fields = ("chosen", "rejected") if item.kind == "preference" else ("answer",)
    final = {**item.record, "instruction": decision["instruction"], **{f: decision[f] for f in fields}}
    if item.kind == "preference":
        final.pop("answer", None)
    return training_record(final, record_provenance(item, decision))


def build_dataset(review: Review, fmt: str = "auto") -> tuple[list[dict], Counter]:
    """The rows of the kept items of kind `fmt` (auto: the one kind they all share), and counts
    per outcome plus `undecided`, `changed` (decided on an older version of the item) and
    `other kind` (kept, but not of the kind asked for)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    counts, kept = Counter(), []
    for item in review.items:
        status = review.status(item)
        counts[status] += 1
        if status == "changed":  # decided on an older version: as good as undecided
            counts["undecided"] += 1
        if status in KEPT_OUTCOMES:
            kept.append(item)
    kinds = {item.kind for item in kept}
    if fmt == "auto" and len(kinds) > 1:
        raise DataError(str(review.items_path), None, "kind", "the kept items are both SFT and preference; "
                        "choose one with --format sft or --format preference")
    rows = []
    for item in kept:
        if fmt != "auto" and item.kind != fmt:
            counts["other kind"] += 1
        else:
            rows.append(dataset_row(item, review.decision(item)))
    return rows, counts


def import_decisions(review: Review, out: Path, fmt: str = "auto") -> Counter:
    """Write the dataset to `out` atomically; return the counts. Raises DataError when no row is kept."""
    rows, counts = build_dataset(review, fmt)
    if not rows:
        raise DataError(str(review.decisions_path), None, None, "no accepted, edited or written items to import "
                        f"({describe_counts(counts)}); nothing written")
    write_atomic(out, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    write_atomic(card_path(out), card(review, out, rows, counts))
    return counts


def card_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}.card.md")


def card(review: Review, out: Path, rows: list[dict], counts: Counter) -> str:
    """The reviewed dataset's card: where its records came from and who reviewed them."""
    origins = Counter(row["provenance"]["origin"] for row in rows)
    models = Counter(row["provenance"]["model"] or "unknown" for row in rows)
    reviewers = Counter(row["provenance"]["reviewer"] or "unknown" for row in rows)
    times = sorted(row["provenance"]["reviewed_at"] for row in rows if row["provenance"]["reviewed_at"])

    def listed(counter: Counter) -> str:
        return ", ".join(f"{name} {n}" for name, n in counter.most_common())

    return "\n".join([
        f"# {out.name}: a reviewed dataset", "",
        f"{len(rows)} records imported by `rayalign review import` from `{review.items_path}` and the decisions "
        f"in `{review.decisions_path}`.", "",
        "## Provenance", "",
        f"- origin: {listed(origins)} (generated: the model's text as it was; edited or written: by a person)",
        f"- models: {listed(models)}",
        f"- reviewers: {listed(reviewers)}" + (f", from {times[0]} to {times[-1]}" if times else ""),
        f"- decisions: {describe_counts(counts)}", "",
        "Each record's `provenance` names its item, model, filter scores, the teacher's confidence, the "
        "reviewer and the time of the decision.", ""])


def describe_counts(counts: Counter) -> str:
    text = ", ".join(f"{counts[name]} {name}" for name in (*KEPT_OUTCOMES, "rejected", "undecided"))
    if counts["changed"]:
        text += f" ({counts['changed']} of them changed since reviewed)"
    if counts["other kind"]:
        text += f"; {counts['other kind']} kept but of the other kind, left out"
    return text
