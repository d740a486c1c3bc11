"""SFT end to end on Ray: full, partial and LoRA on a tiny model; kill-and-resume; SmolLM2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import write_jsonl
from rayalign.config import load_config

ADDITION = [
    {"messages": [{"role": "user", "content": f"What is {a} + {b}? Answer with just the number."},
                  {"role": "assistant", "content": str(a + b)}]}
    for a in range(10) for b in range(10)
]


@pytest.fixture(scope="module")
def addition_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("addition")
    return write_jsonl(folder / "train.jsonl", ADDITION[:80]), write_jsonl(folder / "eval.jsonl", ADDITION[80:])


def tiny_overrides(tiny_model, data, tmp_path, name, *extra):
    train, held_out = data
    return [f"name={name}", f"output_dir={tmp_path}", f"model.name_or_path={tiny_model}",
            f"data.train={train}", f"data.eval={held_out}", "train.lr=3e-3", "train.lr_scheduler=constant",
            "train.warmup_steps=0", "logging.progress=false", *extra]


def run(recipe, overrides):
    from rayalign.pipelines.sft import run_sft

    return run_sft(load_config(recipe, overrides))


def test_full_sft_lowers_held_out_loss(ray_cluster, tiny_model, addition_data, tmp_path):
    report = run("sft_full", tiny_overrides(tiny_model, addition_data, tmp_path, "full", "train.max_steps=8"))
    assert report["steps"] == 8
    assert report["eval_loss_after"] < report["eval_loss_before"] - 0.05
    run_dir = tmp_path / "full"
    assert (run_dir / "final" / "config.json").is_file()
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps[0] == 0 and 8 in steps
    assert list((run_dir / "tensorboard").iterdir())
    assert (run_dir / "checkpoints" / "latest").read_text() == "step-000008"


def test_partial_sft_trains_only_the_unfrozen_layers(ray_cluster, tiny_model, addition_data, tmp_path):
    report = run("sft_partial", tiny_overrides(tiny_model, addition_data, tmp_path, "partial", "train.max_steps=4",
                                               "model.freeze.layers=0-0", "model.freeze.modules=[embed_tokens]"))
    assert report["eval_loss_after"] < report["eval_loss_before"]
    before = load_file(Path(tiny_model) / "model.safetensors")
    after = load_file(tmp_path / "partial" / "final" / "model.safetensors")
    for name, weight in before.items():
        frozen = name.startswith("model.layers.0.") or "embed_tokens" in name
        assert torch.equal(weight, after[name]) == frozen, name


def test_lora_sft_writes_an_adapter(ray_cluster, tiny_model, addition_data, tmp_path):
    report = run("quickstart", tiny_overrides(tiny_model, addition_data, tmp_path, "lora", "train.max_steps=6",
                                              "train.eval_every=3", "train.save_every=3"))
    final = tmp_path / "lora" / "final"
    assert json.loads((final / "adapter_config.json").read_text())["base_model_name_or_path"] == tiny_model
    assert report["eval_loss_after"] < report["eval_loss_before"]
    assert "trainable parameters" in report["trainable"]
    assert sorted(p.name for p in (tmp_path / "lora" / "checkpoints").glob("step-*")) == ["step-000003", "step-000006"]


def _last_losses(metrics: Path) -> dict[int, float]:
    losses = {}
    for line in metrics.read_text().splitlines():
        record = json.loads(line)
        if "train/loss" in record:
            losses[record["step"]] = record["train/loss"]
    return losses


def test_killed_run_resumes_from_its_last_checkpoint(tiny_model, addition_data, tmp_path):
    """Kill the driver (and the local Ray it started) mid-run; the same command finishes the
    run from the last checkpoint, and every later step matches an uninterrupted run."""
    env = {**os.environ, "RAY_ADDRESS": "local", "PYTHONUNBUFFERED": "1"}
    steps = 400

    def command(name):
        overrides = tiny_overrides(tiny_model, addition_data, tmp_path, name, f"train.max_steps={steps}",
                                   "train.save_every=40", "train.keep_last=2", "train.lr=1e-3")
        return [sys.executable, "-m", "rayalign.cli", "sft", "--config", "quickstart", *overrides]

    reference = subprocess.run(command("reference"), env=env, capture_output=True, text=True, timeout=600)
    assert reference.returncode == 0, reference.stderr[-3000:]

    victim = subprocess.Popen(command("resumed"), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True)
    latest = tmp_path / "resumed" / "checkpoints" / "latest"
    deadline = time.time() + 300
    while not latest.exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    killed_at = int(latest.read_text().split("-")[1])
    assert 0 < killed_at < steps, "the run must be killed mid-way"

    resumed = subprocess.run(command("resumed"), env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from" in resumed.stdout and f"(step {killed_at}," in resumed.stdout

    expected = _last_losses(tmp_path / "reference" / "metrics.jsonl")
    got = _last_losses(tmp_path / "resumed" / "metrics.jsonl")
    assert sorted(got) == list(range(1, steps + 1))
    for step in range(killed_at + 1, steps + 1):
        assert got[step] == pytest.approx(expected[step], abs=1e-5), step
    report = json.loads((tmp_path / "resumed" / "report.json").read_text())
    assert report["eval_loss_after"] == pytest.approx(
        json.loads((tmp_path / "reference" / "report.json").read_text())["eval_loss_after"], abs=1e-5)


@pytest.mark.slow
def test_smollm2_lora_on_two_zero2_workers_lowers_held_out_loss(ray_cluster, tmp_path):
    """The quickstart recipe, shortened: SmolLM2-135M-Instruct, LoRA, 2 DeepSpeed ZeRO-2 ranks."""
    report = run("quickstart", [f"output_dir={tmp_path}", "train.max_steps=12", "train.save_every=0",
                                "train.eval_every=0", "data.max_eval_samples=48", "logging.progress=false"])
    print(f"SmolLM2 LoRA, 12 steps: held-out loss {report['eval_loss_before']:.4f} -> {report['eval_loss_after']:.4f}")
    assert report["eval_loss_before"] > 2.0
    assert report["eval_loss_after"] < report["eval_loss_before"] - 0.15  # measured: 2.35 -> 1.98


def test_zero_stages_train_and_export_the_same_model(ray_cluster, tiny_model, addition_data, tmp_path):
    """ZeRO 0, 1, 2 and 3 partition differently but compute the same updates; the ZeRO-3
    export gathers the partitioned weights into a whole model."""
    finals = {}
    for stage in (0, 1, 2, 3):
        report = run("sft_full", tiny_overrides(tiny_model, addition_data, tmp_path, f"z{stage}",
                                                "train.max_steps=3", f"train.zero_stage={stage}"))
        finals[stage] = (report["eval_loss_after"], load_file(tmp_path / f"z{stage}" / "final" / "model.safetensors"))
    loss0, weights0 = finals[0]
    for stage in (1, 2, 3):
        loss, weights = finals[stage]
        assert loss == pytest.approx(loss0, abs=1e-5), stage
        for name, weight in weights0.items():
            assert weights[name].shape == weight.shape and torch.allclose(weights[name], weight, atol=1e-6), (stage, name)
