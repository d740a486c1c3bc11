"""Property-based tests of every reader of a user's file (issue 16, item 1).

Whatever the bytes, in whatever file type a reader takes, it loads them or raises its own error
(DataError; ConfigError for recipes) naming the file and the line, and the field where one is at
fault; never another exception, and never slower than the deadline. The targets and the property
live in tests/fuzz_targets.py, shared with the longer atheris run (scripts/fuzz_readers.py).

Examples per test: FUZZ_EXAMPLES (default 40; CI runs it so, derandomised, in well under a
minute). Counts: `pytest tests/test_fuzz_readers.py --hypothesis-show-statistics`.
"""

from __future__ import annotations

import codecs
import json
import os
import subprocess
import sys
import time
from datetime import timedelta

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz_targets import TARGETS, check_target
from rayalign.config import ConfigError, load_config
from rayalign.data import readers
from rayalign.data.constitution import load_constitution
from rayalign.data.formats import load_examples
from rayalign.data.preference import pair_margin
from rayalign.data.readers import DataError, read_rows

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
# The deadline catches a hang: a read of these small files takes milliseconds.
FUZZ = settings(max_examples=EXAMPLES, deadline=timedelta(seconds=10), derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# Values a field may hold in a hostile file: every JSON type, and the edges of each.
HOSTILE = [None, True, False, 0, -1, 10 ** 400, -(10 ** 30), 1e308, float("nan"), float("inf"), "", " \n",
           "\ud800", "\x00", "x" * 5000, [], {}, [[[[]]]], ["a"], {"role": "user"},
           [{"role": "assistant", "content": 1}], [{"role": "wizard", "content": "x"}], [None]]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    | st.sampled_from(range(len(HOSTILE))).map(HOSTILE.__getitem__),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12)
# Byte sequences that break a file in the ways files do break.
SPLICES = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\x00", b"\r", b"\n", b"\r\n",
           codecs.BOM_UTF8, b"{", b"}", b'"', b"[" * 3000, b"{\"a\":" * 1500, b"9" * 5000, b"NaN", b"\\ud800",
           b"- " * 300, b"&a [*a, *a]", b"!!python/object:os.system"]


def _mutate_value(draw, value, depth: int = 0):
    """`value` with one element somewhere in it replaced, dropped or added."""
    if isinstance(value, dict) and value and depth < 4 and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(value)))
        action = draw(st.sampled_from(["replace", "drop", "descend", "add"]))
        copy = dict(value)
        if action == "drop":
            del copy[key]
        elif action == "add":
            copy[draw(st.text(max_size=10))] = draw(json_values)
        else:
            copy[key] = _mutate_value(draw, value[key], depth + 1) if action == "descend" else draw(json_values)
        return copy
    if isinstance(value, list) and value and depth < 4 and draw(st.booleans()):
        index = draw(st.integers(0, len(value) - 1))
        copy = list(value)
        copy[index] = _mutate_value(draw, value[index], depth + 1)
        return copy
    return draw(json_values)


def _dump(target, tree) -> bytes:
    if target.suffix == ".yaml":
        return yaml.safe_dump(tree, allow_unicode=True).encode("utf-8", "surrogatepass")
    return "".join(json.dumps(row) + "\n" for row in tree).encode()


@st.composite
def mutated_files(draw, target):
    """A valid file of the target's kind, its structure mutated, then its bytes."""
    if target.raw:
        data = target.raw
    elif target.suffix == ".yaml":
        tree = yaml.safe_load(target.text)
        data = _dump(target, _mutate_value(draw, tree)) if draw(st.booleans()) else target.text.encode()
    else:
        rows = draw(st.lists(st.sampled_from(target.seeds), min_size=1, max_size=4))
        rows = [_mutate_value(draw, row) if draw(st.booleans()) else row for row in rows]
        data = _dump(target, rows)
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["splice", "flip", "truncate", "bom", "crlf", "blank"]))
        at = draw(st.integers(0, len(data)))
        if op == "splice":
            data = data[:at] + draw(st.sampled_from(range(len(SPLICES))).map(SPLICES.__getitem__) | st.binary(min_size=1, max_size=8)) + data[at:]
        elif op == "flip" and data:
            at = min(at, len(data) - 1)
            data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]
        elif op == "truncate":
            data = data[:at]
        elif op == "bom":
            data = codecs.BOM_UTF8 + data
        elif op == "crlf":
            data = data.replace(b"\n", b"\r\n")
        else:
            data = data[:at] + b"\n  \n" + data[at:]
    return data


def _file(tmp_path, name: str, suffix: str, data: bytes):
    path = tmp_path / f"fuzzed-{name}{suffix}"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_valid_files_load(tmp_path, name):
    target = TARGETS[name]
    assert check_target(name, _file(tmp_path, name, target.suffix, target.valid_bytes())) == "loaded"


@pytest.mark.parametrize("name", sorted(TARGETS))
@FUZZ
@given(data=st.binary(max_size=600))
def test_any_bytes_load_or_name_the_file_and_line(tmp_path, name, data):
    check_target(name, _file(tmp_path, name, TARGETS[name].suffix, data))


@pytest.mark.parametrize("name", sorted(TARGETS))
@FUZZ
@given(data=st.data())
def test_mutated_valid_files_load_or_name_the_file_and_line(tmp_path, name, data):
    target = TARGETS[name]
    check_target(name, _file(tmp_path, name, target.suffix, data.draw(mutated_files(target))))


# The two cases of the issue, and each bug the fuzzing found, as plain tests.

def _write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_an_invalid_utf8_byte_names_file_line_and_column(tmp_path):
    path = _write(tmp_path, "train.jsonl", b'{"text": "fine"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(DataError) as info:
        load_examples(path)
    assert (info.value.source, info.value.line) == (path, 2)
    assert str(info.value) == f"{path}, line 2: not valid UTF-8 (byte 0xe9 at column 14)"


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_a_leading_byte_order_mark_is_accepted(tmp_path, suffix):
    path = _write(tmp_path, f"train{suffix}", codecs.BOM_UTF8 + b'{"text": "a"}\r\n{"text": "b"}\r\n')
    assert [row.fields["text"] for row in read_rows(path)] == ["a", "b"]


def test_a_byte_order_mark_after_the_first_line_is_refused(tmp_path):
    path = _write(tmp_path, "train.jsonl", b'{"text": "a"}\n' + codecs.BOM_UTF8 + b'{"text": "b"}\n')
    with pytest.raises(DataError, match="line 2: not valid JSON"):
        read_rows(path)


def test_the_sft_command_takes_a_bom_and_names_a_bad_byte_before_any_model(tmp_path):
    """Through `rayalign sft` itself, in one run: the training file starts with a byte-order
    mark and loads; the held-out file's bad byte stops the command with one line naming file and
    line, no traceback, before a run folder is made or a model loaded."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
    train = _write(tmp_path, "train.jsonl", codecs.BOM_UTF8 + b'{"text": "ok"}\n{"text": "fine"}\n')
    held_out = _write(tmp_path, "eval.jsonl", b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    started = time.time()
    done = subprocess.run([sys.executable, "-m", "rayalign.cli", "sft", "--config", "quickstart",
                           f"output_dir={tmp_path / 'runs'}", f"data.train={train}", f"data.eval={held_out}"],
                          env=env, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-3000:]
    assert f"rayalign: error: {held_out}, line 2: not valid UTF-8 (byte 0xe9 at column 14)" in output, output[-3000:]
    assert "Traceback" not in output and str(train) not in output, output[-3000:]
    assert not (tmp_path / "runs" / "sft" / "config.yaml").exists(), "no run folder for a bad file"
    assert time.time() - started < 120


@pytest.mark.parametrize("line, message", [
    (b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    (b'{"text": ' + b"9" * 5000 + b"}", "a number with too many digits"),
])
def test_hostile_json_lines_are_data_errors(tmp_path, line, message):
    path = _write(tmp_path, "train.jsonl", b'{"text": "a"}\n' + line + b"\n")
    with pytest.raises(DataError, match=f"line 2: not usable JSON \\({message}"):
        read_rows(path)


def test_a_line_longer_than_the_limit_is_refused_without_holding_it(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "MAX_LINE_BYTES", 100)
    path = _write(tmp_path, "train.jsonl", b'{"text": "a"}\n{"text": "' + b"x" * 1000 + b'"}\n{"text": "b"}\n')
    records = list(readers.jsonl_records(readers.Path(path)))
    assert isinstance(records[1], DataError) and records[1].line == 2 and "longer than 100 bytes" in str(records[1])
    assert records[2].line == 3 and records[2].fields == {"text": "b"}


def test_a_file_that_is_not_parquet_is_a_data_error(tmp_path):
    path = _write(tmp_path, "train.parquet", b"PAR1 not really PAR1")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        read_rows(path)


def test_a_margin_too_large_for_a_float_names_its_field(tmp_path):
    path = _write(tmp_path, "pairs.jsonl", json.dumps({"prompt": "q", "chosen": "a", "rejected": "b",
                                                       "margin": 10 ** 400}).encode() + b"\n")
    _, [row] = load_examples(path)
    with pytest.raises(DataError) as info:
        pair_margin(row)
    assert info.value.field == "margin" and "an integer of 401 digits" in str(info.value)


def test_yaml_files_skip_a_bom_and_name_a_bad_byte_or_depth(tmp_path):
    shipped = TARGETS["constitution"].text.encode()
    assert load_constitution(_write(tmp_path, "bom.yaml", codecs.BOM_UTF8 + shipped)).principles
    with pytest.raises(DataError, match=r"bad\.yaml, line 2: not valid UTF-8"):
        load_constitution(_write(tmp_path, "bad.yaml", b"name: x\nprinciples: \xff\n"))
    with pytest.raises(DataError, match=r"deep\.yaml, line 1: not usable YAML \(nested more than 100 deep\)"):
        load_constitution(_write(tmp_path, "deep.yaml", b"name: " + b"[" * 200))
    with pytest.raises(DataError, match=r"deeper\.yaml, line 1: not (usable|valid) YAML"):  # libyaml stops at 1000
        load_constitution(_write(tmp_path, "deeper.yaml", b"name: " + b"[" * 20_000))
    recipe = TARGETS["recipe"].text.encode()
    assert load_config(_write(tmp_path, "recipe.yaml", codecs.BOM_UTF8 + recipe)).name == "sft"
    with pytest.raises(ConfigError, match=r"recipe2\.yaml, line 2: not valid UTF-8"):
        load_config(_write(tmp_path, "recipe2.yaml", recipe.replace(b"\n", b"\n\xfe", 1)))
    with pytest.raises(ConfigError, match=r"long\.yaml, line 2: not usable YAML \(a number with too many digits\)"):
        load_config(_write(tmp_path, "long.yaml", b"method: sft\nseed: " + b"9" * 5000 + b"\n"))
    with pytest.raises(ConfigError, match=r"override 'data\.train=\[a'"):
        load_config(_write(tmp_path, "recipe3.yaml", recipe), ["data.train=[a"])


def test_a_recipe_of_aliases_of_aliases_is_refused_quickly(tmp_path):
    """Each level doubles the walk of a naive key-origin map: 40 levels would never end."""
    levels = ["a0: &a0 {x: 1, y: 2}"] + [f"a{i}: &a{i} {{l: *a{i - 1}, r: *a{i - 1}}}" for i in range(1, 40)]
    path = _write(tmp_path, "bomb.yaml", ("\n".join(levels) + "\n").encode())
    started = time.time()
    with pytest.raises(ConfigError, match="bomb.yaml, line 1: a0"):
        load_config(path)
    assert time.time() - started < 10


def test_an_uploads_bad_byte_is_named_by_its_filename_not_the_stored_path(tmp_path):
    from rayalign.data.openai_files import check_file

    stored = _write(tmp_path, "file-abc123.jsonl", b'{"messages": [{"role": "user", "content": "\xff"}]}\n')
    with pytest.raises(DataError) as info:
        check_file(stored, "train.jsonl")
    assert str(info.value).startswith("train.jsonl, line 1: not valid UTF-8") and "file-abc123" not in str(info.value)


@pytest.mark.parametrize("name, row, field", [
    ("sft", {"text": 5}, "text"),
    ("sft", {"prompt": "a", "completion": 7}, "completion"),
    ("sft", {"messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
    ("preference", {"prompt": "q", "chosen": "a", "rejected": "b", "margin": 10 ** 400}, "margin"),
    ("preference", {"prompt": "q", "chosen": "a", "rejected": "b", "soft_label": float("nan")}, "soft_label"),
    ("sdg.seeds", {"instruction": ["x"]}, "instruction"),
    ("review.items", {"id": "a", "instruction": "b", "scores": {"x": "high"}}, "scores"),
    ("openai.supervised", {"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
    ("rlaif.examples", {"prompt": "q", "a": "x", "b": "y", "verdict": "C"}, "verdict"),
])
def test_a_wrong_value_names_its_field(tmp_path, name, row, field):
    path = _write(tmp_path, "rows.jsonl", json.dumps(row).encode() + b"\n")
    with pytest.raises(DataError) as info:
        TARGETS[name].read(path)
    assert (info.value.line, info.value.field) == (1, field)
    assert f"{path}, line 1, field '{field}'" in str(info.value)


def test_a_constitution_value_of_the_wrong_type_names_line_and_field(tmp_path):
    text = TARGETS["constitution"].text.replace("critique:", "critique: [1]\n    old_critique:", 1)
    with pytest.raises(DataError) as info:
        load_constitution(_write(tmp_path, "c.yaml", text.encode()))
    assert info.value.field is not None and info.value.field.startswith("principles[0].") and info.value.line


@pytest.mark.parametrize("text", [b"=\n", b"name: !!python/object:os.system x\n"])
def test_a_yaml_tag_that_cannot_be_built_is_a_config_error(tmp_path, text):
    with pytest.raises(ConfigError, match=r"recipe\.yaml, line 1: not valid YAML"):
        load_config(_write(tmp_path, "recipe.yaml", text))
    with pytest.raises(ConfigError, match=r"override 'data\.train==', line 1: not valid YAML"):
        load_config(_write(tmp_path, "ok.yaml", TARGETS["recipe"].text.encode()), ["data.train=="])


def test_a_lone_surrogate_escape_names_its_field(tmp_path):
    """JSON allows "\\ud800" alone; Python reads it into a str that no UTF-8 writer or tokenizer
    takes (found by the fuzzing: the review app's item hash raised UnicodeEncodeError)."""
    path = _write(tmp_path, "items.jsonl", b'{"id": "a", "instruction": "b \\ud83d\\ude00"}\n'
                                           b'{"id": "c", "instruction": "d", "answer": "\\ud800"}\n')
    with pytest.raises(DataError) as info:
        TARGETS["review.items"].read(path)
    assert (info.value.line, info.value.field) == (2, "answer")


@pytest.mark.parametrize("text, message", [(b"applications: true\n", "`applications` is a list"),
                                           (b"- a\n", "a Serve config is a mapping"),
                                           (b"applications:\n  - name: rayalign\n    args: [1]\n", "args is a mapping")])
def test_a_serve_config_of_the_wrong_shape_is_a_config_error(tmp_path, text, message):
    from rayalign.serving.settings import read_serve_config

    with pytest.raises(ConfigError, match=message):
        read_serve_config(_write(tmp_path, "serve.yaml", text))


def test_lineage_counts_a_provenance_origin_that_is_not_text(tmp_path):
    """Found by the fuzzing (2000 examples): `"origin": [null]` made the origin counter raise
    TypeError, so the run's lineage was lost (record_lineage only warns)."""
    from rayalign.lineage.data import summarise_dataset

    path = _write(tmp_path, "data.jsonl", b'{"text": "a", "provenance": {"origin": [null], "model": {"m": 1}}}\n')
    summary = summarise_dataset("train", path)
    assert summary["records"] == 1 and summary["origin"]["origins"] == {"[null]": 1}
