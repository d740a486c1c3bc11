"""Read rows from JSONL, Parquet or a `datasets` folder, keeping where each row came from.

Every row carries its source and 1-based line (JSONL) or row number (Parquet, datasets),
so a validation error can say exactly which record is wrong.
"""

from __future__ import annotations

import codecs
import json
import re
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


MAX_LINE_BYTES = 64 * 2 ** 20  # one record larger than this is a broken file, not a long document


def decode_utf8(raw: bytes, source: str, line: int = 1, starts_file: bool = True) -> str:
    """`raw` as text, without a UTF-8 byte-order mark where it `starts_file`; a byte that is not
    UTF-8 is a DataError naming the line it is on (counted from `line`) and its column."""
    if starts_file:
        raw = raw.removeprefix(codecs.BOM_UTF8)  # as editors that mark UTF-8 save it
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        start = raw.rfind(b"\n", 0, exc.start) + 1
        column = len(raw[start:exc.start].decode("utf-8", "replace")) + 1
        raise DataError(source, line + raw.count(b"\n", 0, exc.start), None,
                        f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {column})") from None


def parse_json(text: str, source: str, line: int | None) -> object:
    """`json.loads`, every way it can fail a DataError naming the line."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        message = f"not valid JSON ({exc.msg} at column {exc.colno})"
    except RecursionError:
        message = "not usable JSON (nested too deeply)"
    except ValueError as exc:
        digits = "integer string conversion" in str(exc)  # more digits than Python converts (4300)
        message = f"not usable JSON ({'a number with too many digits' if digits else exc})"
    raise DataError(source, line, None, message)


def _lines(handle) -> Iterator[bytes | None]:
    """The lines of a binary file, each read with a bounded buffer; None for a line longer than
    MAX_LINE_BYTES (whose bytes are skipped, never held)."""
    while raw := handle.readline(MAX_LINE_BYTES + 1):
        if len(raw) <= MAX_LINE_BYTES or raw.endswith(b"\n"):
            yield raw
            continue
        while (rest := handle.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
            pass
        yield None


def jsonl_records(path: Path, source: str | None = None) -> Iterator[Row | DataError]:
    """Each non-blank line of a JSONL file: a Row, or the DataError naming why it is not one
    (not UTF-8, not JSON, not an object, longer than MAX_LINE_BYTES). A leading UTF-8 byte-order
    mark is skipped. `source` names the file in both (default: the path)."""
    source = source or str(path)
    with open(path, "rb") as handle:
        for number, raw in enumerate(_lines(handle), start=1):
            if raw is None:
                yield DataError(source, number, None, f"line longer than {MAX_LINE_BYTES} bytes")
                continue
            try:
                text = decode_utf8(raw, source, number, starts_file=number == 1)
                if not text.strip():
                    continue
                fields = parse_json(text, source, number)
            except DataError as error:
                yield error
                continue
            if not isinstance(fields, dict):
                yield DataError(source, number, None, f"expected a JSON object, got {type(fields).__name__}")
                continue
            if SURROGATE_ESCAPE.search(text) and (field := _unencodable(fields)) is not False:
                yield DataError(source, number, field, "a \\ud800-\\udfff escape that is not half of a pair "
                                "(text that is not Unicode)")
                continue
            yield Row(source, number, fields)


SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _unencodable(fields: dict) -> str | None | bool:
    """The top-level field holding a lone surrogate (None: a key does), or False when none does:
    such text cannot be written as UTF-8 nor tokenized."""
    for key, value in fields.items():
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            return None
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            return key
    return False


def _jsonl(path: Path, source: str) -> list[Row]:
    rows = []
    for record in jsonl_records(path, source):
        if isinstance(record, DataError):
            raise record
        rows.append(record)
    return rows


def _table(source: str, records: list[dict]) -> list[Row]:
    return [Row(source, number, fields) for number, fields in enumerate(records, start=1)]


def read_rows(path: str, source: str | None = None) -> list[Row]:
    """All rows of a .jsonl (or JSON-lines .json) file, a .parquet file, or a `save_to_disk` folder;
    `source` names it in rows and errors (default: the resolved path), e.g. an upload's filename."""
    resolved = resolve_data_path(path)
    source = source or str(resolved)
    if resolved.is_dir():
        import datasets

        try:
            dataset = datasets.load_from_disk(str(resolved))
        except FileNotFoundError as exc:
            raise DataError(source, None, None, f"not a datasets folder ({exc})") from None
        if isinstance(dataset, datasets.DatasetDict):
            raise DataError(source, None, None, f"holds splits {list(dataset)}; point at one split's folder")
        return _table(source, dataset.to_list())
    if resolved.suffix == ".parquet":
        import pyarrow
        import pyarrow.parquet as pq

        try:
            records = pq.read_table(resolved).to_pylist()
        except (pyarrow.ArrowException, OSError, ValueError) as exc:  # not Parquet, or cut short
            raise DataError(source, None, None, f"not a readable Parquet file ({exc})") from None
        return _table(source, records)
    if resolved.suffix in (".jsonl", ".json"):
        return _jsonl(resolved, source)
    raise DataError(source, None, None, "unknown file type; use .jsonl, .parquet or a datasets folder")
