"""Read rows from JSONL, Parquet or a `datasets` folder, keeping where each row came from.

Every row carries its source and 1-based line (JSONL) or row number (Parquet, datasets),
so a validation error can say exactly which record is wrong.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SHIPPED_DIR = Path(__file__).parent / "shipped"


class DataError(ValueError):
    """A data file or record that cannot be used; the message names file, line and field."""

    def __init__(self, source: str, line: int | None, field: str | None, message: str):
        self.source, self.line, self.field = source, line, field
        where = source if line is None else f"{source}, line {line}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Row:
    source: str
    line: int
    fields: dict

    def error(self, field: str | None, message: str) -> DataError:
        return DataError(self.source, self.line, field, message)


def resolve_data_path(path: str) -> Path:
    """`shipped:NAME` is a file shipped with rayalign; anything else a local path."""
    if path.startswith("shipped:"):
        resolved = SHIPPED_DIR / path.removeprefix("shipped:")
    else:
        resolved = Path(path).expanduser()
    if not resolved.exists():
        raise DataError(path, None, None, "no such file or folder")
    return resolved


def jsonl_records(path: Path, source: str | None = None) -> Iterator[Row | DataError]:
    """Each non-blank line of a JSONL file: a Row, or the DataError naming why it is not one
    (not UTF-8, not JSON, not an object). A leading UTF-8 byte-order mark is skipped. `source`
    names the file in both (default: the path)."""
    source = source or str(path)
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)  # as editors that mark UTF-8 save it
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield DataError(source, number, None, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column "
                                f"{len(raw[:exc.start].decode('utf-8', 'replace')) + 1})")
                continue
            if not text.strip():
                continue
            try:
                fields = json.loads(text)
            except json.JSONDecodeError as exc:
                yield DataError(source, number, None, f"not valid JSON ({exc.msg} at column {exc.colno})")
                continue
            if not isinstance(fields, dict):
                yield DataError(source, number, None, f"expected a JSON object, got {type(fields).__name__}")
                continue
            yield Row(source, number, fields)


def _jsonl(path: Path) -> list[Row]:
    rows = []
    for record in jsonl_records(path):
        if isinstance(record, DataError):
            raise record
        rows.append(record)
    return rows


def _table(path: Path, records: list[dict]) -> list[Row]:
    return [Row(str(path), number, fields) for number, fields in enumerate(records, start=1)]


def read_rows(path: str) -> list[Row]:
    """All rows of a .jsonl (or JSON-lines .json) file, a .parquet file, or a `save_to_disk` folder."""
    resolved = resolve_data_path(path)
    if resolved.is_dir():
        import datasets

        try:
            dataset = datasets.load_from_disk(str(resolved))
        except FileNotFoundError as exc:
            raise DataError(str(resolved), None, None, f"not a datasets folder ({exc})") from None
        if isinstance(dataset, datasets.DatasetDict):
            raise DataError(str(resolved), None, None, f"holds splits {list(dataset)}; point at one split's folder")
        return _table(resolved, dataset.to_list())
    if resolved.suffix == ".parquet":
        import pyarrow.parquet as pq

        return _table(resolved, pq.read_table(resolved).to_pylist())
    if resolved.suffix in (".jsonl", ".json"):
        return _jsonl(resolved)
    raise DataError(str(resolved), None, None, "unknown file type; use .jsonl, .parquet or a datasets folder")
