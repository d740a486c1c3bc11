"""Every entry point that reads a user's file, for the fuzz tests (tests/test_fuzz_readers.py)
and the bounded atheris run (scripts/fuzz_readers.py).

A target reads one file (the fuzzed bytes, saved with its suffix) the way rayalign does, and
goes on to the checks that follow the read (pair splitting, margins, OpenAI conversion...).
`check_target` states the property: the file loads, or the error is the target's own (DataError,
ConfigError for recipes) and names the file, and the line unless the fault is the whole file's.
Anything else (another exception, a message naming no file or no line) is an AssertionError.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rayalign.cli.tools import reward_sources
from rayalign.config import ConfigError, load_config
from rayalign.data.ai_labels import read_examples, read_pairs
from rayalign.data.constitution import load_constitution
from rayalign.data.formats import FORMATS, PREFERENCE, load_examples
from rayalign.data.openai_files import check_file, convert_file
from rayalign.data.preference import pair_margin, pair_target, split_pair, uses_soft_labels
from rayalign.data.prompts import PROMPT_FORMATS, _split
from rayalign.data.readers import SHIPPED_DIR, DataError, read_rows
from rayalign.data.sdg_items import read_seeds
from rayalign.lineage.data import summarise_dataset
from rayalign.pipelines.sft import SFT_FORMATS
from rayalign.review.items import read_decisions, read_items
from rayalign.serving.settings import read_serve_config

UPLOAD = "my upload.jsonl"  # the filename a client gave; the stored path is the server's business
ROOT = Path(__file__).parent.parent
RECIPES = ROOT / "rayalign" / "recipes"

# Errors that are about the whole file, so name no line.
WHOLE_FILE = ("no records", "no seed tasks", "no items", "no few-shot examples", "not a readable Parquet file",
              "empty file", "Field required", "a recipe is a mapping")


def _preference(path: str) -> None:
    _, rows = load_examples(path, (PREFERENCE,))
    uses_soft_labels(rows, "auto")
    for row in rows:
        split_pair(row)
        if row.fields.get("margin") is not None:
            pair_margin(row)
        if row.fields.get("soft_label") is not None:
            pair_target(row)


def _prompts(path: str) -> None:
    fmt, rows = load_examples(path, PROMPT_FORMATS)
    for row in rows:
        _split(row, fmt)


def _lineage(path: str) -> None:
    summary = summarise_dataset("train", path)
    assert isinstance(summary, dict) and "sha256" in summary, summary


@dataclass
class Target:
    suffix: str
    read: Callable[[str], object]
    seeds: list[dict] = field(default_factory=list)   # valid rows (JSON targets)
    text: str = ""                                    # a valid file (YAML targets)
    raw: bytes = b""                                  # a valid file (binary targets: Parquet)
    error: type = DataError
    never_raises: bool = False                         # lineage: warns, never fails a run
    names: str = ""                                   # what errors call the file (default: its path)
    needs_line: bool = True                            # False: schema errors name the key, not the line

    def valid_bytes(self) -> bytes:
        if self.raw:
            return self.raw
        return self.text.encode() if self.text else "".join(json.dumps(row) + "\n" for row in self.seeds).encode()


def _messages(*turns: tuple[str, str]) -> list[dict]:
    return [{"role": role, "content": content} for role, content in turns]


SFT_ROWS = [{"text": "hello there"}, {"prompt": "2+2?", "completion": "4"},
            {"messages": _messages(("user", "hi"), ("assistant", "hello"))}]
PREFERENCE_ROWS = [{"prompt": "2+2?", "chosen": "4", "rejected": "5", "margin": 1.5, "soft_label": 0.8},
                   {"chosen": _messages(("user", "hi"), ("assistant", "hello")),
                    "rejected": _messages(("user", "hi"), ("assistant", "go away")), "margin": 2, "soft_label": 1}]
OPENAI_SUPERVISED = [{"messages": _messages(("system", "be brief"), ("user", "hi"), ("assistant", "hello"))},
                     {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y", "weight": 1}]}]
OPENAI_DPO = [{"input": {"messages": _messages(("user", "hi"))},
               "preferred_output": _messages(("assistant", "hello")),
               "non_preferred_output": _messages(("assistant", "go away"))}]
OPENAI_REINFORCEMENT = [{"messages": _messages(("developer", "answer"), ("user", "2+2?")), "reference_answer": "4"}]
ITEMS = [{"id": "r000-0001", "instruction": "add", "input": "2+2", "answer": "4", "kind": "sft", "origin": "generated",
          "scores": {"length": 1.0}, "confidence": 0.9, "kept": True},
         {"id": "r000-0002", "instruction": "pick", "chosen": "a", "rejected": "b", "kind": "preference"}]
DECISIONS = [{"id": "r000-0001", "item_sha": "0123456789abcdef", "action": "accept"},
             {"id": "r000-0002", "item_sha": "fedcba9876543210", "action": "edit", "answer": "5"}]
LABEL_EXAMPLES = [{"prompt": "2+2?", "a": "4", "b": "5", "verdict": "A", "rationale": "sums"}]
PAIRS = [{"prompt": "2+2?", "a": "4", "b": "5"}, {"prompt": "hi", "a": "hello", "b": "go away"}]
SEEDS = [{"instruction": "add the numbers", "input": "2 3", "output": "5"}, {"prompt": "name a colour"},
         {"messages": _messages(("user", "hi"), ("assistant", "hello"))}]



def _parquet_bytes(rows: list[dict]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), out)
    return out.getvalue()


TARGETS: dict[str, Target] = {
    "rows.jsonl": Target(".jsonl", read_rows, SFT_ROWS),
    "rows.parquet": Target(".parquet", lambda path: load_examples(path, FORMATS),
                           raw=_parquet_bytes([{"prompt": "2+2?", "completion": "4"}, {"prompt": "hi", "completion": "yo"}])),
    "rows.json": Target(".json", read_rows, SFT_ROWS),
    "examples": Target(".jsonl", lambda path: load_examples(path, FORMATS), SFT_ROWS[:1] * 2),
    "sft": Target(".jsonl", lambda path: load_examples(path, SFT_FORMATS), SFT_ROWS[2:] * 2),
    "preference": Target(".jsonl", _preference, PREFERENCE_ROWS),
    "prompts": Target(".jsonl", _prompts, SFT_ROWS[2:] + [{"messages": _messages(("system", "be brief"), ("user", "2+2?"), ("assistant", "4"))}]),
    "sdg.seeds": Target(".jsonl", read_seeds, SEEDS),
    "openai.supervised": Target(".jsonl", lambda path: convert_file(path, "supervised"), OPENAI_SUPERVISED),
    "openai.dpo": Target(".jsonl", lambda path: convert_file(path, "dpo"), OPENAI_DPO),
    "openai.reinforcement": Target(".jsonl", lambda path: convert_file(path, "reinforcement"), OPENAI_REINFORCEMENT),
    "openai.check": Target(".jsonl", check_file, OPENAI_SUPERVISED),
    "openai.upload": Target(".jsonl", lambda path: check_file(path, UPLOAD), OPENAI_SUPERVISED,
                            names=UPLOAD),
    "review.items": Target(".jsonl", read_items, ITEMS),
    "review.decisions": Target(".jsonl", lambda path: read_decisions(Path(path)), DECISIONS),
    "rlaif.examples": Target(".jsonl", read_examples, LABEL_EXAMPLES),
    "rlaif.pairs": Target(".jsonl", lambda path: read_pairs(path, 0), PAIRS),
    "lineage": Target(".jsonl", _lineage, [{**ITEMS[0], "provenance": {"origin": "edited", "reviewer": "ann"}},
                                           {"prompt": "x", "labeler": "judge"}], never_raises=True),
    "constitution": Target(".yaml", load_constitution,
                           text=(SHIPPED_DIR / "constitution_quickstart.yaml").read_text(encoding="utf-8")),
    "recipe": Target(".yaml", load_config, text=(RECIPES / "quickstart.yaml").read_text(encoding="utf-8"),
                     error=ConfigError),
    "rewards": Target(".yaml", reward_sources, error=ConfigError, needs_line=False,
                      text="rewards:\n  - type: function\n    path: rayalign.rewards.quickstart:constraint_check\n"
                           "    weight: 1.0\n"),
    "serve.config": Target(".yaml", read_serve_config, error=ConfigError, needs_line=False,
                           text=(ROOT / "serve" / "config.yaml").read_text(encoding="utf-8")),
}


def check_target(name: str, path: Path) -> str:
    """Run target `name` on the file at `path`; 'loaded' or 'refused', else an AssertionError."""
    target = TARGETS[name]
    try:
        target.read(str(path))
    except target.error as exc:
        assert not target.never_raises, f"{name} raised {exc!r}"
        message = str(exc)
        named = target.names or str(path)
        assert named in message, f"{name}: the error does not name the file ({named}): {message!r}"
        line = getattr(exc, "line", None)
        if line is not None:
            assert f"line {line}" in message, message
        elif target.needs_line and not any(reason in message for reason in WHOLE_FILE):
            assert "line " in message, f"{name}: the error names no line: {message!r}"
        field_ = getattr(exc, "field", None)
        if field_ is not None:
            assert f"field '{field_}'" in message, message
        return "refused"
    return "loaded"
