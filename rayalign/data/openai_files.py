"""OpenAI's fine-tuning files, checked line by line and converted to the formats rayalign reads.

A fine-tuning job names one of OpenAI's three methods; each has its own row shape:

- supervised:     {"messages": [...]}: a conversation; an assistant turn with "weight": 0 is
                  context, not a target. -> conversational rows (TRL's format)
- dpo:            {"input": {"messages": [...]}, "preferred_output": [assistant message],
                  "non_preferred_output": [assistant message]} -> preference rows
                  (prompt / chosen / rejected as message lists)
- reinforcement:  {"messages": [...ending with the user's turn], ...any other fields}: a prompt;
                  the other fields are what graders read as `item.<field>`. -> prompt-only rows,
                  the other fields kept beside the prompt as metadata

A "developer" message becomes a "system" one (chat templates know the latter). Tool
definitions and tool calls are valid OpenAI rows that rayalign does not train on yet: they are
refused by name rather than dropped. Every refusal is a DataError naming the file, the line
and the field path; the converted rows are checked again by the format they become, so the
pipelines take them as they are.
"""

from __future__ import annotations

import json
from pathlib import Path

from rayalign.data.formats import CONVERSATIONAL, PREFERENCE, PROMPT_ONLY, validate
from rayalign.data.readers import DataError, Row, read_rows
from rayalign.runs import write_atomic

METHODS = ("supervised", "dpo", "reinforcement")
ROLES = ("system", "developer", "user", "assistant", "tool")
ROW_FIELDS = {"supervised": {"messages", "tools", "parallel_tool_calls"},
              "dpo": {"input", "preferred_output", "non_preferred_output"}}
NOT_YET = ("tools", "tool_calls", "function_call", "functions")
# Fields of a reinforcement row that would make the converted row read as another format.
RESERVED = ("prompt", "completion", "chosen", "rejected", "text")


def _shape(fields: dict) -> str | None:
    """Which method a row looks like, from its keys and its last message."""
    if "input" in fields or "preferred_output" in fields or "non_preferred_output" in fields:
        return "dpo"
    messages = fields.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
        return "supervised" if messages[-1].get("role") == "assistant" else "reinforcement"
    return None


def _messages(row: Row, value, where: str) -> list[dict]:
    """A checked message list, developer turns as system ones; tool calling refused by name."""
    if not isinstance(value, list) or not value:
        raise row.error(where, "expected a non-empty list of messages")
    converted = []
    for index, message in enumerate(value):
        at = f"{where}[{index}]"
        if not isinstance(message, dict):
            raise row.error(at, f"expected a message object, got {type(message).__name__}")
        role = message.get("role")
        if role not in ROLES:
            raise row.error(f"{at}.role", f"{role!r} is not one of {', '.join(ROLES)}")
        for key in NOT_YET:
            if key in message:
                raise row.error(f"{at}.{key}", "tool calling is valid OpenAI data that rayalign does not train on yet")
        if not isinstance(message.get("content"), str) or not message["content"].strip():
            raise row.error(f"{at}.content", "missing, empty or not a string (rayalign takes text content)")
        if "weight" in message and (role != "assistant" or message["weight"] not in (0, 1)):
            raise row.error(f"{at}.weight", "only an assistant message has a weight, and it is 0 or 1")
        converted.append({**message, "role": "system" if role == "developer" else role})
    return converted


def _output(row: Row, fields: dict, name: str) -> list[dict]:
    if name not in fields:
        raise row.error(name, "missing")
    messages = _messages(row, fields[name], name)
    if len(messages) != 1 or messages[0]["role"] != "assistant":
        raise row.error(name, "expected exactly one assistant message")
    return messages


def convert_row(row: Row, method: str) -> Row:
    """One OpenAI row of `method` as the rayalign row its pipeline reads; DataError otherwise."""
    fields = row.fields
    shape = _shape(fields)
    if shape is None:
        raise row.error(None, f"not an OpenAI {method} row: fields {sorted(fields)}; "
                        + ("expected input, preferred_output and non_preferred_output" if method == "dpo"
                           else "expected messages"))
    if shape != method and not (method == "supervised" and shape == "reinforcement"):
        raise row.error(None, f"this looks like a {shape} row ({', '.join(sorted(fields))}); the job's method "
                        f"is {method}")
    for key in NOT_YET:
        if key in fields:
            raise row.error(key, "tool calling is valid OpenAI data that rayalign does not train on yet")
    if method == "supervised":
        unknown = sorted(set(fields) - ROW_FIELDS[method])
        if unknown:
            raise row.error(unknown[0], f"not a field of a supervised row ({', '.join(sorted(ROW_FIELDS[method]))})")
        messages = _messages(row, fields.get("messages"), "messages")
        if not any(m["role"] == "assistant" and m.get("weight", 1) == 1 for m in messages):
            raise row.error("messages", "no assistant message with weight 1 to learn from")
        converted, fmt = {"messages": messages}, CONVERSATIONAL
    elif method == "dpo":
        unknown = sorted(set(fields) - ROW_FIELDS[method])
        if unknown:
            raise row.error(unknown[0], "not a field of a dpo row (input, preferred_output, non_preferred_output)")
        given = fields.get("input")
        if not isinstance(given, dict):
            raise row.error("input", "missing or not an object with messages")
        for key in NOT_YET:
            if key in given:
                raise row.error(f"input.{key}", "tool calling is valid OpenAI data that rayalign does not train on yet")
        prompt = _messages(row, given.get("messages"), "input.messages")
        if prompt[-1]["role"] == "assistant":
            raise row.error(f"input.messages[{len(prompt) - 1}]", "the input ends with an assistant turn; the "
                            "outputs are the answers to it")
        converted = {"prompt": prompt, "chosen": _output(row, fields, "preferred_output"),
                     "rejected": _output(row, fields, "non_preferred_output")}
        if converted["chosen"] == converted["rejected"]:
            raise row.error("non_preferred_output", "identical to preferred_output")
        fmt = PREFERENCE
    else:
        prompt = _messages(row, fields.get("messages"), "messages")
        if prompt[-1]["role"] not in ("user", "system"):
            raise row.error(f"messages[{len(prompt) - 1}].role", "a reinforcement prompt ends with the user's "
                            "(or developer's) turn; the model writes the answer")
        clash = [key for key in RESERVED if key in fields]
        if clash:
            raise row.error(clash[0], "this name is reserved by rayalign's row formats; rename the field")
        converted = {"prompt": prompt, **{k: v for k, v in fields.items() if k != "messages"}}
        fmt = PROMPT_ONLY
    out = Row(row.source, row.line, converted)
    validate(out, (fmt,))
    return out


def _read(path: str, source: str | None) -> list[Row]:
    """The file's rows, named `source` in errors (an upload's filename rather than its stored path)."""
    rows = read_rows(path, source)  # a bad byte or line is named in the upload's name, not the stored path
    if not rows:
        raise DataError(source or path, None, None, "no records")
    return rows


def convert_file(path: str, method: str, source: str | None = None) -> list[Row]:
    """Every row of an OpenAI fine-tuning file, converted; the first bad line stops it, named."""
    if method not in METHODS:
        raise DataError(source or path, None, None, f"unknown method {method!r}; OpenAI's are {', '.join(METHODS)}")
    return [convert_row(row, method) for row in _read(path, source)]


def check_file(path: str, source: str | None = None) -> str:
    """The method an uploaded file is for (the shape of its first row), after every row is
    converted as that method; a DataError names the first bad line and field."""
    rows = _read(path, source)
    method = _shape(rows[0].fields) or "supervised"  # a row of no shape: the supervised error names it
    for row in rows:
        convert_row(row, method)
    return method


def write_rows(rows: list[Row], path: Path) -> None:
    """Converted rows as a JSONL file, written atomically (what a job's recipe then names)."""
    write_atomic(path, "".join(json.dumps(row.fields, ensure_ascii=False) + "\n" for row in rows))
