"""The items a person reviews, the decisions they make, and where the review stands.

An items file is JSONL (written by `rayalign sdg generate` / `rayalign sdg label`): an `id`
and an `instruction` on every line; an `answer` (SFT), or `chosen` and `rejected`
(preference), or no answer at all for a prompt a person should answer; and optionally what
the filter chain and the teacher said about it (`kept`, `filter`, `reason`, `scores`,
`confidence`, `teacher`, `origin`, `kind`). A malformed line raises `DataError` naming the
file, line and field.

The decisions file is append-only JSONL: one line per decision, flushed and fsync'd the
moment it is made, never rewritten; the latest line for an id wins. Each decision carries
the hash of the item it was made on, so a decision on an item that has changed since is
stale: the item counts as not reviewed and is shown again.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from rayalign.data.readers import DataError, Row, read_rows

ACTIONS = ("accept", "edit", "reject")
OUTCOMES = ("accepted", "edited", "written", "rejected")
OPTIONAL_TEXTS = ("input", "answer", "chosen", "rejected")


class InvalidDecision(ValueError):
    """A decision that cannot be recorded (an empty text, nothing to accept); the message says why."""


@dataclass(frozen=True)
class Item:
    record: dict  # the line as written, untouched
    line: int
    sha: str  # hash of the record: tells a decision on this exact item from one on an older version

    @property
    def id(self) -> str:
        return self.record["id"]

    @property
    def instruction(self) -> str:
        return self.record["instruction"]

    @property
    def input(self) -> str:
        return self.record.get("input") or ""

    @property
    def kind(self) -> str:
        has_pair = self.record.get("chosen") is not None or self.record.get("rejected") is not None
        return "preference" if has_pair or self.record.get("kind") == "preference" else "sft"

    @property
    def answer_fields(self) -> tuple[str, ...]:
        return ("chosen", "rejected") if self.kind == "preference" else ("answer",)

    @property
    def texts(self) -> dict[str, str]:
        """The answer text(s) as generated, "" where there are none."""
        return {field: self.record.get(field) or "" for field in self.answer_fields}

    @property
    def has_answer(self) -> bool:
        return all(self.texts.values())


def item_sha(record: dict) -> str:
    canonical = json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _check_item(row: Row) -> None:
    for field in ("id", "instruction"):
        value = row.fields.get(field)
        if value is None:
            raise row.error(field, "missing")
        if not isinstance(value, str) or not value.strip():
            raise row.error(field, f"expected a non-empty string, got {value!r}")
    for field in OPTIONAL_TEXTS:
        value = row.fields.get(field)
        if value is not None and not isinstance(value, str):
            raise row.error(field, f"expected a string, got {type(value).__name__}")
    for field, other in (("chosen", "rejected"), ("rejected", "chosen")):
        if row.fields.get(field) is not None and row.fields.get(other) is None:
            raise row.error(other, f"missing: a preference item needs both chosen and rejected ({field} is set)")
    scores = row.fields.get("scores")
    if scores is not None and not (isinstance(scores, dict) and all(
            isinstance(value, (int, float)) for value in scores.values())):
        raise row.error("scores", f"expected an object of name -> number, got {scores!r}")
    confidence = row.fields.get("confidence")
    if confidence is not None and not isinstance(confidence, (int, float)):
        raise row.error("confidence", f"expected a number, got {confidence!r}")


def read_items(path: str | Path) -> list[Item]:
    """All items of a JSONL file, in order; ids must be unique."""
    items, lines_by_id = [], {}
    for row in read_rows(str(path)):
        _check_item(row)
        item_id = row.fields["id"]
        if item_id in lines_by_id:
            raise row.error("id", f"duplicate id {item_id!r} (first on line {lines_by_id[item_id]})")
        lines_by_id[item_id] = row.line
        items.append(Item(row.fields, row.line, item_sha(row.fields)))
    if not items:
        raise DataError(str(path), None, None, "no items")
    return items


def decisions_path_for(items_path: str | Path, decisions: str | Path | None = None) -> Path:
    """The decisions file: `decisions`, else `<items stem>.decisions.jsonl` next to the items."""
    items_path = Path(items_path)
    path = Path(decisions) if decisions else items_path.with_name(f"{items_path.stem}.decisions.jsonl")
    if path.suffix != ".jsonl":
        raise DataError(str(path), None, None, "the decisions file must be a .jsonl file")
    return path


def read_decisions(path: Path) -> dict[str, dict]:
    """The latest decision per item id; {} when no decision has been made yet."""
    if not path.exists():
        return {}
    latest = {}
    for row in read_rows(str(path)):
        for field in ("id", "item_sha"):
            if not isinstance(row.fields.get(field), str):
                raise row.error(field, "missing or not a string")
        if row.fields.get("action") not in ACTIONS:
            raise row.error("action", f"expected one of {ACTIONS}, got {row.fields.get('action')!r}")
        latest[row.fields["id"]] = row.fields
    return latest


def append_decision(path: Path, decision: dict) -> None:
    """One line at the end of the decisions file, on disk before this returns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(decision, ensure_ascii=False) + "\n")
        out.flush()
        os.fsync(out.fileno())


def outcome(item: Item, decision: dict) -> str:
    """accepted, edited, written (an answer a person wrote where there was none) or rejected."""
    if decision["action"] == "reject":
        return "rejected"
    if decision["action"] == "accept":
        return "accepted"
    return "edited" if item.has_answer else "written"


@dataclass(frozen=True)
class Progress:
    total: int
    counts: dict[str, int]  # per outcome
    stale: int  # decisions on items that have changed since
    answers_missing: bool  # some items have no answer: show how many were written

    @property
    def reviewed(self) -> int:
        return sum(self.counts.values())

    def __str__(self) -> str:
        shown = [name for name in OUTCOMES if name != "written" or self.answers_missing or self.counts[name]]
        text = f"{self.reviewed} of {self.total} reviewed; " + ", ".join(f"{self.counts[n]} {n}" for n in shown)
        return text + (f"; {self.stale} changed since reviewed" if self.stale else "")


class Review:
    """The items and the decisions so far: what the pages show, and the one way to record a decision."""

    def __init__(self, items_path: str | Path, decisions_path: Path):
        self.items_path, self.decisions_path = Path(items_path), decisions_path
        self.items = read_items(items_path)
        self.latest = read_decisions(decisions_path)
        self._recording = threading.Lock()  # the app answers requests on several threads

    def decision(self, item: Item) -> dict | None:
        """The latest decision on this very item; None if undecided or decided on an older version."""
        decision = self.latest.get(item.id)
        return decision if decision and decision["item_sha"] == item.sha else None

    def stale_decision(self, item: Item) -> dict | None:
        decision = self.latest.get(item.id)
        return decision if decision and decision["item_sha"] != item.sha else None

    def status(self, item: Item) -> str:
        decision = self.decision(item)
        if decision:
            return outcome(item, decision)
        return "changed" if self.stale_decision(item) else "undecided"

    def progress(self) -> Progress:
        statuses = [self.status(item) for item in self.items]
        return Progress(len(self.items), {name: statuses.count(name) for name in OUTCOMES},
                        statuses.count("changed"), not all(item.has_answer for item in self.items))

    def next_undecided(self, after: int = -1) -> int | None:
        """The index of the first item without a decision after index `after`, wrapping round."""
        count = len(self.items)
        for step in range(1, count + 1):
            index = (after + step) % count
            if self.decision(self.items[index]) is None:
                return index
        return None

    def record(self, item: Item, action: str, reviewer: str, instruction: str | None = None,
               texts: dict[str, str] | None = None, note: str = "") -> dict:
        """Append a decision and return it. An edit that changes nothing is recorded as an accept."""
        if action not in ACTIONS:
            raise InvalidDecision(f"unknown action {action!r}; expected one of {ACTIONS}")
        instruction = item.instruction if instruction is None else instruction.replace("\r\n", "\n")
        texts = item.texts if texts is None else {f: texts.get(f, "").replace("\r\n", "\n") for f in item.answer_fields}
        if action == "edit" and instruction == item.instruction and texts == item.texts:
            action = "accept"
        if action != "reject":
            _check_texts(item, instruction, texts)
        decision = {"id": item.id, "action": action, "instruction": instruction, **texts, "note": note.strip(),
                    "reviewer": reviewer, "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "item_sha": item.sha}
        with self._recording:
            append_decision(self.decisions_path, decision)
            self.latest[item.id] = decision
        return decision


def _check_texts(item: Item, instruction: str, texts: dict[str, str]) -> None:
    if not instruction.strip():
        raise InvalidDecision("the instruction is empty")
    empty = [field for field, text in texts.items() if not text.strip()]
    if empty:
        what = "this item has no answer: write one" if not item.has_answer else f"{' and '.join(empty)} is empty"
        raise InvalidDecision(what)
    if item.kind == "preference" and texts["chosen"] == texts["rejected"]:
        raise InvalidDecision("chosen and rejected are the same text")
