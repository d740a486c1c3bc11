"""OpenAI's fine-tuning files (supervised, dpo, reinforcement): converted to the rows the
pipelines read, read by those pipelines' own loaders, and every bad line named."""

from __future__ import annotations

import json

import pytest

from conftest import write_jsonl
from rayalign.data.encode import encode_sft
from rayalign.data.formats import CONVERSATIONAL, load_examples
from rayalign.data.openai_files import convert_file, write_rows
from rayalign.data.preference import load_pairs
from rayalign.data.prompts import load_prompts
from rayalign.data.readers import DataError
from rayalign.models.loading import load_tokenizer

DEV = {"role": "developer", "content": "Answer with a number."}
Q1 = {"role": "user", "content": "What is 3 + 4?"}
A1 = {"role": "assistant", "content": "7"}
Q2 = {"role": "user", "content": "And 2 + 2?"}
A2 = {"role": "assistant", "content": "4"}
SFT_ROW = {"messages": [DEV, Q1, {**A1, "weight": 0}, Q2, A2]}
DPO_ROW = {"input": {"messages": [DEV, Q1]}, "preferred_output": [A1],
           "non_preferred_output": [{"role": "assistant", "content": "Seven, I think."}]}
RFT_ROW = {"messages": [DEV, Q1], "reference_answer": "7", "check": {"type": "number"}}


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    return load_tokenizer(tiny_model)


def target_text(tokenizer, encoded) -> str:
    return tokenizer.decode([t for t, m in zip(encoded.input_ids, encoded.loss_mask) if m])


def converted(tmp_path, method, rows, name="train.jsonl"):
    rows = convert_file(write_jsonl(tmp_path / name, rows), method)
    out = tmp_path / f"{method}.rayalign.jsonl"
    write_rows(rows, out)
    return rows, str(out)


def test_supervised_rows_train_only_the_weighted_assistant_turns(tmp_path, tokenizer):
    rows, path = converted(tmp_path, "supervised", [SFT_ROW])
    assert [m["role"] for m in rows[0].fields["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    fmt, [row] = load_examples(path)
    assert fmt == CONVERSATIONAL
    encoded = encode_sft(row, fmt, tokenizer, max_length=256)
    assert target_text(tokenizer, encoded) == "4<|im_end|>\n"  # "7" carries weight 0: context, not a target
    plain = [{key: value for key, value in m.items() if key != "weight"} for m in row.fields["messages"]]
    unweighted = encode_sft(load_examples(write_jsonl(tmp_path / "plain.jsonl", [{"messages": plain}]))[1][0],
                            fmt, tokenizer, max_length=256)
    assert target_text(tokenizer, unweighted) == "7<|im_end|>\n4<|im_end|>\n"
    assert unweighted.input_ids == encoded.input_ids  # the weight changes the mask, never the text


def test_dpo_rows_become_the_preference_pairs_dpo_reads(tmp_path, tokenizer):
    rows, path = converted(tmp_path, "dpo", [DPO_ROW, DPO_ROW])
    assert rows[0].fields["prompt"][0] == {"role": "system", "content": "Answer with a number."}
    assert rows[0].fields["chosen"] == [A1]
    pairs = load_pairs(path, tokenizer, 128)
    assert len(pairs) == 2
    chosen, rejected = pairs[0].chosen, pairs[0].rejected
    assert target_text(tokenizer, chosen) == "7<|im_end|>\n"
    assert target_text(tokenizer, rejected) == "Seven, I think.<|im_end|>\n"
    assert tokenizer.decode(chosen.input_ids).startswith("<|im_start|>system\nAnswer with a number.<|im_end|>")


def test_reinforcement_rows_become_prompts_whose_other_fields_reach_the_rewards(tmp_path, tokenizer):
    rows, path = converted(tmp_path, "reinforcement", [RFT_ROW])
    [example] = load_prompts(path, tokenizer, 128)
    assert example.metadata["reference_answer"] == "7" and example.metadata["check"] == {"type": "number"}
    assert tokenizer.decode(example.prompt_ids).endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize("method, row, field, message", [
    ("supervised", DPO_ROW, None, "looks like a dpo row .* the job's method is supervised"),
    ("dpo", SFT_ROW, None, "looks like a supervised row .* the job's method is dpo"),
    ("reinforcement", SFT_ROW, None, "looks like a supervised row"),
    ("supervised", {"messages": [Q1, {**A1, "role": "assistent"}]}, "messages[1].role",
     "'assistent' is not one of system, developer, user, assistant, tool"),
    ("supervised", {"messages": [Q1, {**A1, "weight": 0}]}, "messages", "no assistant message with weight 1"),
    ("supervised", {"messages": [{**Q1, "weight": 1}, A1]}, "messages[0].weight", "only an assistant message"),
    ("supervised", {"messages": [Q1, {**A1, "weight": 0.5}]}, "messages[1].weight", "it is 0 or 1"),
    ("supervised", {"messages": [Q1, A1], "tools": []}, "tools", "does not train on yet"),
    ("supervised", {"messages": [Q1, {"role": "assistant", "content": None, "tool_calls": []}]},
     "messages[1].tool_calls", "tool calling"),
    ("supervised", {"messages": [Q1, {"role": "assistant", "content": [{"type": "text"}]}]},
     "messages[1].content", "not a string"),
    ("supervised", {"messages": [Q1, A1], "extra": 1}, "extra", "not a field of a supervised row"),
    ("dpo", {**DPO_ROW, "preferred_output": [A1, A2]}, "preferred_output", "exactly one assistant message"),
    ("dpo", {**DPO_ROW, "non_preferred_output": [Q1]}, "non_preferred_output", "exactly one assistant message"),
    ("dpo", {key: value for key, value in DPO_ROW.items() if key != "non_preferred_output"},
     "non_preferred_output", "missing"),
    ("dpo", {**DPO_ROW, "input": {"messages": [Q1, A1]}}, "input.messages[1]", "ends with an assistant turn"),
    ("dpo", {**DPO_ROW, "input": [Q1]}, "input", "not an object with messages"),
    ("dpo", {**DPO_ROW, "non_preferred_output": [A1]}, "non_preferred_output", "identical to preferred_output"),
    ("reinforcement", {**RFT_ROW, "prompt": "x"}, "prompt", "reserved"),
    ("reinforcement", {"task": "t"}, None, "not an OpenAI reinforcement row: fields \\['task'\\]; expected messages"),
])
def test_each_bad_row_is_named_by_line_and_field(tmp_path, method, row, field, message):
    path = write_jsonl(tmp_path / "train.jsonl", [{"messages": [Q1, A1]} if method == "supervised" else
                                                  DPO_ROW if method == "dpo" else RFT_ROW, row])
    with pytest.raises(DataError, match=message) as caught:
        convert_file(path, method, source="train.jsonl")
    assert (caught.value.source, caught.value.line, caught.value.field) == ("train.jsonl", 2, field)


def test_file_level_errors(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataError, match="no records"):
        convert_file(str(empty), "supervised")
    with pytest.raises(DataError, match="unknown method 'rlhf'"):
        convert_file(str(empty), "rlhf")
    broken = write_jsonl(tmp_path / "broken.jsonl", [SFT_ROW, '{"messages": [}'])
    with pytest.raises(DataError, match=r"line 2: not valid JSON \(Expecting value at column 15\)"):
        convert_file(broken, "supervised")


def test_a_byte_order_mark_is_read_and_bad_utf8_is_named_by_line(tmp_path):
    marked = tmp_path / "marked.jsonl"
    marked.write_bytes(b"\xef\xbb\xbf" + json.dumps(SFT_ROW).encode() + b"\n")
    assert len(convert_file(str(marked), "supervised")) == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(json.dumps(SFT_ROW).encode() + b'\n{"messages": "caf\xe9"}\n')
    with pytest.raises(DataError) as caught:
        load_examples(str(bad))
    assert str(caught.value) == f"{bad}, line 2: not valid UTF-8 (byte 0xe9 at column 18)"


def test_the_command_converts_a_file_or_names_its_bad_line(tmp_path, capsys):
    from rayalign.cli import main

    good = write_jsonl(tmp_path / "train.jsonl", [SFT_ROW, SFT_ROW])
    out = tmp_path / "out" / "train.rayalign.jsonl"
    assert main(["data", "from-openai", "supervised", good, str(out)]) == 0
    assert "2 supervised rows written" in capsys.readouterr().out
    assert load_examples(str(out))[0] == CONVERSATIONAL
    bad = write_jsonl(tmp_path / "bad.jsonl", [SFT_ROW, DPO_ROW])
    assert main(["data", "from-openai", "supervised", bad, str(tmp_path / "never.jsonl")]) == 2
    assert "line 2: this looks like a dpo row" in capsys.readouterr().err
    assert not (tmp_path / "never.jsonl").exists()
