"""The `rayalign` command line: help, config inspection, and errors that name their cause."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import write_jsonl
from rayalign.cli import main
from rayalign.config import load_config
from rayalign.workers.group import WorkerError


def rayalign(*args):
    return subprocess.run([sys.executable, "-m", "rayalign.cli", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_the_commands():
    result = rayalign("--help")
    assert result.returncode == 0
    for command in ("quickstart", "prompt", "eval", "sft", "report", "config", "model"):
        assert command in result.stdout
    sft = rayalign("sft", "--help")
    assert sft.returncode == 0 and "--config" in sft.stdout and "key.path=value" in sft.stdout


def test_config_show_applies_overrides(capsys):
    assert main(["config", "show", "quickstart", "train.lr=0.005", "placement.num_workers=1"]) == 0
    shown = capsys.readouterr().out
    assert "lr: 0.005" in shown and "num_workers: 1" in shown and "method: sft" in shown


def test_bad_recipe_key_exits_2_naming_file_and_line(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("method: sft\nname: x\ndata:\n  train: a.jsonl\ntrain:\n  lr: 1e-4\n  epochz: 2\n")
    assert main(["sft", "--config", str(recipe)]) == 2
    error = capsys.readouterr().err
    assert f"{recipe}, line 7: train.epochz: Extra inputs are not permitted" in error


def test_bad_data_row_exits_2_naming_file_line_and_field(tmp_path, tiny_model, capsys):
    rows = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
            {"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "beep"}]}]
    data = write_jsonl(tmp_path / "bad.jsonl", rows)
    code = main(["sft", "--config", "quickstart", f"output_dir={tmp_path}", f"model.name_or_path={tiny_model}",
                 f"data.train={data}", "data.eval=null"])
    assert code == 2
    assert f"{data}, line 2, field 'messages[1].role'" in capsys.readouterr().err


def test_worker_failure_names_the_role(ray_cluster, tiny_model, tmp_path):
    from rayalign.pipelines.sft import run_sft

    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "a b c d e f"}] * 8)
    config = load_config("quickstart", [f"output_dir={tmp_path}", f"model.name_or_path={tiny_model}",
                                        f"data.train={data}", "data.eval=null", "placement.num_workers=1",
                                        "model.lora.target_modules=[no_such_module]", "logging.progress=false"])
    with pytest.raises(WorkerError, match=r"PolicyTrainer rank 0: setup failed: \w+Error: .*no_such_module"):
        run_sft(config)
