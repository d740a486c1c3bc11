"""How usable a training file is for SFT, measured: records, how many are demonstrations that
validate, how many fail (the first errors named by line and field), how varied their wording is
(distinct-2: distinct word bigrams over all bigrams) and what share are near-duplicates of an
earlier record (MinHash-LSH over word bigrams, Jaccard >= 0.5, as the synthetic data filter).

A JSONL line that is not JSON counts as a failure here instead of stopping the survey: the
point is to measure the file, not to train on it. Other files (Parquet, datasets folders) are
read whole by the usual reader.
"""

from __future__ import annotations

import json

from rayalign.data.formats import CONVERSATIONAL, LANGUAGE_MODELING, PROMPT_COMPLETION, validate
from rayalign.data.readers import DataError, Row, read_rows, resolve_data_path
from rayalign.data.sdg_dedup import NearDuplicateFilter
from rayalign.data.sdg_filters import words

DEMONSTRATIONS = (LANGUAGE_MODELING, PROMPT_COMPLETION, CONVERSATIONAL)
SHOWN_ERRORS = 3


def _read(path: str) -> tuple[list[Row], list[str]]:
    """The rows that parse, and an error per line that does not."""
    resolved = resolve_data_path(path)
    if resolved.suffix not in (".jsonl", ".json"):
        return read_rows(path), []
    rows, errors = [], []
    with open(resolved, encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                fields = json.loads(text)
            except json.JSONDecodeError as exc:
                errors.append(f"{path}, line {number}: not valid JSON ({exc.msg})")
                continue
            if not isinstance(fields, dict):
                errors.append(f"{path}, line {number}: expected a JSON object")
                continue
            rows.append(Row(path, number, fields))
    return rows, errors


def _flat(value) -> str:
    if isinstance(value, list):
        return "\n".join(m.get("content", "") for m in value if isinstance(m, dict))
    return value if isinstance(value, str) else ""


def demonstration_text(row: Row, fmt: str) -> str:
    if fmt == LANGUAGE_MODELING:
        return row.fields["text"]
    if fmt == CONVERSATIONAL:
        return _flat(row.fields["messages"])
    return _flat(row.fields["prompt"]) + "\n" + _flat(row.fields["completion"])


def survey(path: str) -> dict:
    rows, errors = _read(path)
    unreadable = len(errors)
    texts, other = [], 0
    for row in rows:
        try:
            fmt = validate(row)
        except DataError as exc:
            errors.append(str(exc))
            continue
        if fmt in DEMONSTRATIONS:
            texts.append(demonstration_text(row, fmt))
        else:
            other += 1
    bigrams = [tuple(tokens[i:i + 2]) for tokens in map(words, texts) for i in range(len(tokens) - 1)]
    duplicates = NearDuplicateFilter(fields=("text",))
    near = 0
    for text in texts:
        item = {"text": text}
        if duplicates.check(item).passed:
            duplicates.remember(item)
        else:
            near += 1
    return {"path": path, "records": len(rows) + unreadable,
            "usable": len(texts), "invalid": len(errors), "other_format": other,
            "first_errors": errors[:SHOWN_ERRORS],
            "distinct_2": len(set(bigrams)) / len(bigrams) if bigrams else 0.0,
            "near_duplicate_share": near / len(texts) if texts else 0.0}
