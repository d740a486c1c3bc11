"""The dataset formats users already have, named as TRL names them, and their validation.

- language modeling:  {"text": str}
- prompt-completion:  {"prompt": str, "completion": str}   or both as message lists
- conversational:     {"messages": [{"role", "content"}, ...]}
- prompt-only:        {"prompt": str | messages}
- preference:         {"prompt"?: str | messages, "chosen": ..., "rejected": ...}
Other fields are kept as metadata (e.g. a `check` spec for a rule reward).
"""

from __future__ import annotations

from rayalign.data.readers import DataError, Row, read_rows

LANGUAGE_MODELING = "language_modeling"
PROMPT_COMPLETION = "prompt_completion"
CONVERSATIONAL = "conversational"
PROMPT_ONLY = "prompt_only"
PREFERENCE = "preference"
FORMATS = (LANGUAGE_MODELING, PROMPT_COMPLETION, CONVERSATIONAL, PROMPT_ONLY, PREFERENCE)

ROLES = ("system", "user", "assistant", "tool")


def detect_format(row: Row) -> str:
    keys = {key for key, value in row.fields.items() if value is not None}  # tables fill absent columns with null
    if "chosen" in keys or "rejected" in keys:
        return PREFERENCE
    if "messages" in keys:
        return CONVERSATIONAL
    if "prompt" in keys and "completion" in keys:
        return PROMPT_COMPLETION
    if "prompt" in keys:
        return PROMPT_ONLY
    if "text" in keys:
        return LANGUAGE_MODELING
    raise row.error(None, f"cannot tell the format from fields {sorted(keys)}; expected one of "
                    "text | prompt+completion | messages | prompt | chosen+rejected")


def _text(row: Row, field: str) -> str:
    value = row.fields.get(field)
    if value is None:
        raise row.error(field, "missing")
    if not isinstance(value, str):
        raise row.error(field, f"expected a string, got {type(value).__name__}")
    if not value.strip():
        raise row.error(field, "empty text")
    return value


def checked_messages(row: Row, field: str) -> list[dict]:
    """The message list in `field`, each message checked; a DataError names the bad one."""
    value = row.fields.get(field)
    if value is None:
        raise row.error(field, "missing")
    if not isinstance(value, list) or not value:
        raise row.error(field, "expected a non-empty list of messages")
    for index, message in enumerate(value):
        where = f"{field}[{index}]"
        if not isinstance(message, dict):
            raise row.error(where, f"expected a message object, got {type(message).__name__}")
        if message.get("role") not in ROLES:
            raise row.error(f"{where}.role", f"expected one of {ROLES}, got {message.get('role')!r}")
        if not isinstance(message.get("content"), str):
            raise row.error(f"{where}.content", "missing or not a string")
    return value


def _text_or_messages(row: Row, field: str):
    return checked_messages(row, field) if isinstance(row.fields.get(field), list) else _text(row, field)


def validate(row: Row, accepted: tuple[str, ...] = FORMATS) -> str:
    """Check a row's fields for its format; return the format name or raise DataError."""
    fmt = detect_format(row)
    if fmt not in accepted:
        raise row.error(None, f"is {fmt.replace('_', '-')} data; this method takes "
                        + " or ".join(a.replace("_", "-") for a in accepted))
    if fmt == LANGUAGE_MODELING:
        _text(row, "text")
    elif fmt == CONVERSATIONAL:
        messages = checked_messages(row, "messages")
        if not any(m["role"] == "assistant" for m in messages):
            raise row.error("messages", "no assistant message to learn from")
    elif fmt == PROMPT_COMPLETION:
        prompt, completion = _text_or_messages(row, "prompt"), _text_or_messages(row, "completion")
        if isinstance(prompt, list) != isinstance(completion, list):
            raise row.error("completion", "prompt and completion must both be strings or both message lists")
    elif fmt == PROMPT_ONLY:
        _text_or_messages(row, "prompt")
    else:
        if row.fields.get("prompt") is not None:
            _text_or_messages(row, "prompt")
        chosen, rejected = _text_or_messages(row, "chosen"), _text_or_messages(row, "rejected")
        if isinstance(chosen, list) != isinstance(rejected, list):
            raise row.error("rejected", "chosen and rejected must both be strings or both message lists")
        if chosen == rejected:
            raise row.error("rejected", "identical to chosen")
    return fmt


def load_examples(path: str, accepted: tuple[str, ...] = FORMATS) -> tuple[str, list[Row]]:
    """Read and validate a whole file; every row must share one format. Returns (format, rows)."""
    rows = read_rows(path)
    if not rows:
        raise DataError(path, None, None, "no records")
    first = validate(rows[0], accepted)
    for row in rows[1:]:
        fmt = validate(row, accepted)
        if fmt != first:
            raise row.error(None, f"is {fmt} but the file started as {first} (line {rows[0].line})")
    return first, rows
