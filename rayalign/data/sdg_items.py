"""The items of synthetic data generation: seed tasks in, the teacher's requests, items out.

An item is a dict that the filters (rayalign/data/sdg_filters.py), the review app
(rayalign/review/) and the importers read:

    {"id": "r003-0017", "instruction": str, "input"?: str,
     "answer": str  (kind sft)  |  "chosen": str, "rejected": str  (kind preference),
     "kind": "sft" | "preference", "origin": "seed" | "generated" | "user",
     "teacher": the model that wrote it, "confidence": the teacher's mean token probability,
     "kept": bool, "filter": the filter that rejected it or null, "reason": str,
     "scores": {filter or source: number}, "round": int}

Seed tasks may be given in self-instruct's shape (`instruction`, `input`?, `output` or
`answer`?) or in any of the prompt formats rayalign reads (prompt, prompt+completion,
messages): the last user turn is the task and the assistant's answer, if any, its answer.
"""

from __future__ import annotations

import math
import random
import re

from rayalign.data.formats import CONVERSATIONAL, PROMPT_COMPLETION, PROMPT_ONLY, checked_messages, validate
from rayalign.data.readers import DataError, Row, read_rows
from rayalign.data.rollouts import Continuation

TASK_REQUEST = ("You write tasks for a dataset that teaches an assistant. Here are examples of the tasks:\n\n"
                "{examples}\n\nWrite task {next}: one new task in the same style, on a different topic from "
                "all of the examples. Reply with the task only.")


def read_seeds(path: str) -> list[dict]:
    """The seed tasks of a file, as items; a DataError names the file, line and field of a bad one."""
    rows = read_rows(path)
    if not rows:
        raise DataError(path, None, None, "no seed tasks: the file is empty")
    return [_seed(row) for row in rows]


def _seed(row: Row) -> dict:
    fields = row.fields
    item = {"id": f"seed-{row.line}", "origin": "seed"}
    if "instruction" in fields:
        for field in ("instruction", "input", "output", "answer"):
            value = fields.get(field)
            if value is not None and not isinstance(value, str):
                raise row.error(field, f"expected a string, got {type(value).__name__}")
        if not (fields["instruction"] or "").strip():
            raise row.error("instruction", "empty text")
        item["instruction"] = fields["instruction"].strip()
        if fields.get("input"):
            item["input"] = fields["input"].strip()
        answer = fields.get("answer") or fields.get("output")
    else:  # chat messages may be a prompt alone (no assistant turn)
        fmt = CONVERSATIONAL if "messages" in fields else validate(row, (PROMPT_ONLY, PROMPT_COMPLETION))
        messages = checked_messages(row, "messages") if fmt == CONVERSATIONAL else _as_messages(fields["prompt"])
        if fmt == PROMPT_COMPLETION:
            messages = messages + _as_messages(fields["completion"], "assistant")
        users = [m["content"] for m in messages if m["role"] == "user"]
        if not users:
            raise row.error("messages" if fmt == CONVERSATIONAL else "prompt", "no user turn to take the task from")
        item["instruction"] = users[-1].strip()
        replies = [m["content"] for m in messages if m["role"] == "assistant"]
        answer = replies[-1] if replies else None
    if answer and answer.strip():
        item["answer"] = answer.strip()
    return item


def _as_messages(value, role: str = "user") -> list[dict]:
    return [{"role": role, "content": value}] if isinstance(value, str) else list(value)


def task_text(item: dict) -> str:
    """The task as the model is asked it: the instruction, then its input when there is one."""
    return f"{item['instruction']}\n\n{item['input']}" if item.get("input") else item["instruction"]


def task_request(seeds: list[dict], kept: list[dict], n_examples: int, n_generated: int,
                 rng: random.Random, prefill: bool = True) -> list[dict]:
    """One self-instruct request: `n_examples` tasks shown as a numbered list (up to
    `n_generated` of them from what was kept so far, the rest seeds, in a shuffled order),
    asking for the next one. With `prefill`, the reply is started with the next number
    ("Task 7:"), so the model continues the list instead of chatting about it."""
    generated = rng.sample(kept, min(n_generated, len(kept)))
    shown = generated + rng.sample(seeds, min(n_examples - len(generated), len(seeds)))
    rng.shuffle(shown)
    examples = "\n".join(f"Task {i}: {' '.join(task_text(item).split())}" for i, item in enumerate(shown, 1))
    chat = [{"role": "user", "content": TASK_REQUEST.format(examples=examples, next=len(shown) + 1)}]
    return chat + [{"role": "assistant", "content": f"Task {len(shown) + 1}:"}] if prefill else chat


_LABEL = re.compile(r"^\s*(?:\**\s*)?(?:new\s+)?task\s*\d*\s*[:.)-]\s*\**\s*", re.IGNORECASE)
_NUMBER = re.compile(r"^\s*\d+\s*[.)]\s+")


def parse_task(reply: str) -> str:
    """The task in a teacher's reply: its first non-empty line, without a "Task 9:" label, a
    list number or wrapping quotes ("" when there is none: the format filter counts it)."""
    for line in reply.splitlines():
        line = _NUMBER.sub("", _LABEL.sub("", line)).strip().strip('"\u201c\u201d').strip()
        if line:
            return line
    return ""


def confidence(reply: Continuation) -> float | None:
    """The reply's mean token probability (geometric), from the log-probs the model reported
    for the tokens it chose; None when it reported none."""
    chosen = [tops[token] for token, tops in zip(reply.tokens, reply.top_logprobs) if token in tops]
    finite = [value for value in chosen if math.isfinite(value)]
    return round(math.exp(sum(finite) / len(finite)), 4) if finite else None


def item_id(round_: int, index: int) -> str:
    return f"r{round_:03d}-{index:04d}"
