"""One dataset as lineage records it: where it is, its content hash, its size, where its records came from.

The file is read once, as a stream: every byte goes into the sha256, and a JSONL line is parsed
only when it may carry provenance (it mentions `provenance`, `labeler` or `constitution`), so a
large plain file costs little more than its hash. Where a record came from:

    `provenance` (rayalign sdg generate, review import)  origin edited | written | seed: a person;
                                                          else, with a model named: that model
    `labeler` (rayalign rlaif label)                      AI-labelled by that labeler
    `constitution` and `model` (rayalign rlaif revise)    AI-revised by that model
    none of these                                         the file's `card.json` (sdg: its teacher,
                                                          rlaif label: its labeler), else shipped
                                                          with rayalign (hand-made or rule-written:
                                                          human), else unknown (user data)

Each record is counted as `ai` (by model), `human` or `unknown`; `reviewed` counts the records a
person reviewed (provenance names a reviewer), whatever their origin.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

from rayalign.data.readers import SHIPPED_DIR, DataError, resolve_data_path

HUMAN_ORIGINS = ("edited", "written", "seed")
MARKERS = (b'"provenance"', b'"labeler"', b'"constitution"')
CHUNK = 2 ** 20


def record_origin(row: dict) -> tuple[str, str | None, bool] | None:
    """(origin, the AI model or None, reviewed) of one record, or None when it carries no provenance."""
    provenance = row.get("provenance")
    if isinstance(provenance, dict):
        origin = _text(provenance.get("origin")) or "generated"
        reviewed = bool(provenance.get("reviewer") or provenance.get("reviewed_at"))
        model = None if origin in HUMAN_ORIGINS else _text(provenance.get("model"))
        return origin, model, reviewed
    if row.get("labeler"):
        return "ai-labelled", str(row["labeler"]), False
    if row.get("constitution") and row.get("model"):
        return "ai-revised", str(row["model"]), False
    return None


def _text(value) -> str | None:
    """A provenance value as text for counting (a hand-edited file may hold a list or a number)."""
    return value if isinstance(value, str) or value is None else json.dumps(value)


def _file_origin(path: Path) -> tuple[str, str | None, str]:
    """(origin, AI model or None, what says so) for records without provenance of their own."""
    card = path.parent / "card.json"
    if card.is_file():
        try:
            about = json.loads(card.read_text())
        except (OSError, ValueError):
            about = {}
        if about.get("labeler"):
            return "ai-labelled", str(about["labeler"]), f"{card.name}: labeler"
        if about.get("teacher"):
            return "generated", str(about["teacher"]), f"{card.name}: teacher"
    if path.resolve().is_relative_to(SHIPPED_DIR.resolve()):
        return "shipped", None, "shipped with rayalign (hand-made or rule-written)"
    return "user data", None, "no provenance in the records, no card.json"


def hash_files(path: Path) -> str:
    """sha256 over a folder's files (names and bytes, in sorted order), or a file's bytes."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as handle:
            while block := handle.read(CHUNK):
                digest.update(block)
    return digest.hexdigest()


def _scan_jsonl(path: Path) -> tuple[str, int, list[tuple[str, str | None, bool] | None]]:
    """(sha256, records, each record's origin or None) in one streamed read."""
    digest, records, origins = hashlib.sha256(), 0, []
    with open(path, "rb") as handle:
        for line in handle:
            digest.update(line)
            if not line.strip():
                continue
            records += 1
            found = None
            if any(marker in line for marker in MARKERS):
                try:
                    row = json.loads(line)
                except (ValueError, RecursionError):  # not JSON, or nested too deeply to parse
                    row = None
                found = record_origin(row) if isinstance(row, dict) else None
            origins.append(found)
    return digest.hexdigest(), records, origins


def summarise_dataset(role: str, path: str) -> dict:
    """What lineage.json says about one data path: resolved path, sha256, records, origin counts."""
    entry = {"role": role, "path": path}
    try:
        resolved = resolve_data_path(path)
    except DataError:
        return {**entry, "missing": True}
    entry["resolved"] = str(resolved.resolve())
    if resolved.is_file() and resolved.suffix in (".jsonl", ".json"):
        sha256, records, origins = _scan_jsonl(resolved)
    else:  # Parquet or a datasets folder: hashed, counted when cheap, origin from beside it
        sha256, records, origins = hash_files(resolved), _table_rows(resolved), []
    fallback = _file_origin(resolved)
    counts = Counter()
    by_model, reviewed = Counter(), 0
    for found in origins or [None] * (records or 0):
        origin, model, was_reviewed = found or (fallback[0], fallback[1], False)
        counts[origin] += 1
        reviewed += was_reviewed
        if model:
            by_model[model] += 1
    ai = sum(by_model.values())
    human = sum(n for origin, n in counts.items() if origin in (*HUMAN_ORIGINS, "shipped"))
    summary = {"origins": dict(counts), "ai": dict(by_model), "human": human,
               "unknown": (records or 0) - ai - human, "reviewed": reviewed,
               "from": _told_by(origins, fallback[2])}
    return {**entry, "sha256": sha256, "records": records, "origin": summary}


def _told_by(origins: list, fallback: str) -> str:
    """What the origin counts rest on: the records' own provenance, the fallback, or both."""
    if origins and all(origins):
        return "records"
    return f"records; the rest: {fallback}" if any(origins) else fallback


def _table_rows(path: Path) -> int | None:
    """Rows of a Parquet file from its metadata; None for a folder (not worth opening here)."""
    if path.is_file() and path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    return None
