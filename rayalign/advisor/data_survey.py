"""How usable a training file is for SFT, measured: records, how many are demonstrations that
validate, how many fail (the first errors named by line and field), how varied their wording is
(distinct-2: distinct word bigrams over all bigrams) and what share are near-duplicates of an
earlier record (MinHash-LSH over word bigrams, Jaccard >= 0.5, as the synthetic data filter).

A JSONL line that is not JSON counts as a failure here instead of stopping the survey: the
point is to measure the file, not to train on it. Other files (Parquet, datasets folders) are
read whole by the usual reader.
"""

from __future__ import annotations

from rayalign.data.formats import CONVERSATIONAL, LANGUAGE_MODELING, PROMPT_COMPLETION, validate
from rayalign.data.readers import DataError, Row, jsonl_records, read_rows, resolve_data_path
from rayalign.data.sdg_dedup import NearDuplicateFilter
from rayalign.data.sdg_filters import words

DEMONSTRATIONS = (LANGUAGE_MODELING, PROMPT_COMPLETION, CONVERSATIONAL)
SHOWN_ERRORS = 3


def _read(path: str) -> tuple[list[Row], list[str]]:
    """The rows that parse, and an error per line that does not."""
    resolved = resolve_data_path(path)
    if resolved.suffix not in (".jsonl", ".json"):
        return read_rows(path), []
    records = list(jsonl_records(resolved, path))
    return [r for r in records if isinstance(r, Row)], [str(r) for r in records if isinstance(r, DataError)]


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
