"""Critique and revise: constitution files (errors name file, line and field) and the pipeline on a
tiny model: every round's provenance in every row, pairs that DPO loads and trains on, resume."""

from __future__ import annotations

import json
import random

import pytest

from conftest import write_jsonl
from rayalign.cli import main
from rayalign.config import load_config
from rayalign.data.constitution import load_constitution
from rayalign.data.preference import load_pairs
from rayalign.data.readers import DataError
from rayalign.models.loading import load_tokenizer

CONSTITUTION = """\
name: probe
principles:
  - name: short
    critique: Is the answer short?
    revision: Make it shorter.
  - name: polite
    critique: Is the answer polite?
    revision: Make it polite.
    preference: Prefer the polite answer.
"""


def _write(tmp_path, text: str) -> str:
    path = tmp_path / "constitution.yaml"
    path.write_text(text)
    return str(path)


# ---------------------------------------------------------------- constitution files


def test_constitution_loads_and_its_preamble_lists_every_principle(tmp_path):
    constitution = load_constitution(_write(tmp_path, CONSTITUTION))
    assert constitution.name == "probe" and [p.name for p in constitution.principles] == ["short", "polite"]
    assert constitution.principles[0].preference is None
    preamble = constitution.preamble()
    assert "1. Is the answer short?" in preamble  # no preference sentence: the critique request
    assert "2. Prefer the polite answer." in preamble


def test_shipped_constitution_loads():
    shipped = load_constitution("shipped:constitution_quickstart.yaml")
    assert 3 <= len(shipped.principles) <= 5
    assert all(p.preference and "new answer only" in p.revision for p in shipped.principles)


BROKEN = {
    "missing revision": (CONSTITUTION.replace("    revision: Make it polite.\n", ""), 6,
                         "principles[1].revision", "missing"),
    "unknown key": (CONSTITUTION.replace("    revision: Make it shorter.\n",
                                         "    revision: Make it shorter.\n    severity: high\n"), 6,
                    "principles[0].severity", "unknown key"),
    "unknown top-level key": (CONSTITUTION + "version: 2\n", 10, "version", "unknown key"),
    "empty principles": ("name: probe\nprinciples: []\n", 2, "principles", "non-empty list"),
    "duplicate names": (CONSTITUTION.replace("name: polite", "name: short"), 6, "principles[1].name",
                        "'short' is also the name of principles[0]"),
    "not text": (CONSTITUTION.replace("critique: Is the answer short?", "critique: [a, b]"), 4,
                 "principles[0].critique", "expected text, got a list"),
    "missing name": (CONSTITUTION.replace("name: probe\n", ""), 1, "name", "missing"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_constitution_errors_name_file_line_and_field(tmp_path, case):
    text, line, field, message = BROKEN[case]
    path = _write(tmp_path, text)
    with pytest.raises(DataError) as caught:
        load_constitution(path)
    assert (caught.value.source, caught.value.line, caught.value.field) == (path, line, field)
    assert str(caught.value).startswith(f"{path}, line {line}, field '{field}': ")
    assert message in str(caught.value)


# ---------------------------------------------------------------- the pipeline on a tiny model

PROMPTS = ["What is 3 + 4? Answer with just the number.",
           [{"role": "user", "content": "What is the capital of France? Answer with one word."}],
           "Write one short sentence about the sea that includes the word 'blue'.",
           [{"role": "user", "content": "Is the sky blue? Start your answer with 'Yes'."}],
           "Not asked: past rlaif.max_pairs."]


@pytest.fixture(scope="module")
def chatty_model(tiny_model, tmp_path_factory) -> str:
    """The tiny model with its decoder layers' weights scaled up, so that its greedy replies
    depend on the whole conversation (as it is, it repeats the last token of any prompt)."""
    import torch
    from transformers import AutoModelForCausalLM

    folder = tmp_path_factory.mktemp("chatty-model")
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if ".layers." in name and weight.dim() == 2:
                weight.mul_(10.0)
    model.save_pretrained(folder)
    load_tokenizer(tiny_model).save_pretrained(folder)
    return str(folder)


@pytest.fixture
def revise_config(chatty_model, tmp_path):
    rows = [{"prompt": prompt, "check": {"type": "max_words", "n": 5}} for prompt in PROMPTS]
    data = write_jsonl(tmp_path / "prompts.jsonl", rows)
    return load_config("rlaif_revise", [
        f"output_dir={tmp_path}", f"model.name_or_path={chatty_model}", f"data.train={data}",
        f"rlaif.constitution={_write(tmp_path, CONSTITUTION)}", "rlaif.max_pairs=4", "rlaif.chunk=2",
        "rlaif.rounds=2", "rlaif.critique_max_tokens=6", "rlaif.revision_max_tokens=6", "rewards=[]",
        "rollout.engine=hf", "rollout.dtype=float32", "rollout.cpus_per_worker=1", "rollout.max_new_tokens=6",
        "rollout.max_model_len=512", "logging.progress=false"])


def _rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_revise_keeps_every_round_and_its_pairs_train_dpo(ray_cluster, chatty_model, revise_config, tmp_path):
    from rayalign.pipelines.rlaif_revise import PAIRS_FILE, PARTIAL_FILE, SFT_FILE, run_revise

    report = run_revise(revise_config)
    run = revise_config.run_dir
    sft, pairs = _rows(run / SFT_FILE), _rows(run / PAIRS_FILE)
    assert report["counts"]["prompts"] == 4 and report["resumed"] == 0
    assert len(sft) == report["counts"]["sft_rows"] and len(pairs) == report["counts"]["pairs"] > 0
    assert report["scores_before"].keys() == {"constraint_check"}  # every prompt carries a rule check

    principles = {p.name: p for p in load_constitution(revise_config.rlaif.constitution).principles}
    for index, row in enumerate(sft):
        assert row["prompt"] == ([{"role": "user", "content": PROMPTS[index]}] if isinstance(PROMPTS[index], str)
                                 else PROMPTS[index])
        assert row["model"] == chatty_model and row["constitution"]["name"] == "probe"
        draw = random.Random(revise_config.seed + index)
        expected = [draw.choice(list(principles.values())).name for _ in range(2)]
        assert [step["principle"] for step in row["rounds"]] == expected
        for step in row["rounds"]:
            assert step["critique_request"] == principles[step["principle"]].critique
            assert step["revision_request"] == principles[step["principle"]].revision
        assert row["completion"] == [{"role": "assistant", "content": row["rounds"][-1]["revision"]}]
        assert row["check"] == {"type": "max_words", "n": 5}  # the prompt's own fields travel on
    for row in pairs:
        assert len(row["rounds"]) == 2 and row["first_answer"] != row["rounds"][-1]["revision"]
        assert row["rejected"] == [{"role": "assistant", "content": row["first_answer"]}]
        assert row["chosen"] == [{"role": "assistant", "content": row["rounds"][-1]["revision"]}]
    assert len(load_pairs(str(run / PAIRS_FILE), load_tokenizer(chatty_model), 512)) == len(pairs)

    # `rayalign dpo` trains on the pairs as they are.
    assert main(["dpo", "--config", "dpo", f"output_dir={tmp_path}", f"model.name_or_path={chatty_model}",
                 f"data.train={run / PAIRS_FILE}", "data.eval=null", "train.max_steps=1", "train.micro_batch_size=2",
                 "train.eval_every=0", "train.save_every=0", "placement.num_workers=1",
                 "logging.progress=false"]) == 0

    # Resume: a run stopped after its first chunk (and midway through writing the second)
    # asks only the prompts not done and ends with the same rows.
    partial = run / PARTIAL_FILE
    lines = partial.read_text().splitlines(keepends=True)
    partial.write_text("".join(lines[:2]) + lines[2][:20])
    for name in (SFT_FILE, PAIRS_FILE):
        (run / name).unlink()
    again = run_revise(revise_config)
    assert again["resumed"] == 2 and again["counts"] == report["counts"]
    assert _rows(run / SFT_FILE) == sft and _rows(run / PAIRS_FILE) == pairs
    assert partial.read_text() == "".join(lines)
