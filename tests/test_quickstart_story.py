"""The whole-story quickstart (prompting -> SFT -> GRPO from SFT -> one eval -> report) on a tiny
model and tiny data: every stage runs, a rerun skips them all, and an interrupted stage resumes."""

from __future__ import annotations

import shutil

import pytest

from conftest import write_jsonl
from rayalign.pipelines.quickstart import run_quickstart
from tiny_model import build_tiny_model

pytestmark = pytest.mark.slow


def records(offset: int, n: int) -> list[dict]:
    return [{"messages": [{"role": "user", "content": f"In at most 3 words, what is item {offset + i}?"},
                          {"role": "assistant", "content": f"Item {offset + i}."}],
             "task": "max_words", "check": {"type": "max_words", "n": 3}} for i in range(n)]


def test_story_runs_skips_and_resumes(ray_cluster, tmp_path, capsys):
    model = build_tiny_model(tmp_path / "tiny", hidden_size=64, heads=2)   # a head size vLLM's CPU kernels run
    train = write_jsonl(tmp_path / "train.jsonl", records(0, 24))
    held = (write_jsonl(tmp_path / "held.jsonl", records(100, 6)), write_jsonl(tmp_path / "other.jsonl",
                                                                                records(200, 6)))
    overrides = [f"model.name_or_path={model}", f"data.train={train}", f"data.eval={held[0]}", "data.max_length=256",
                 "logging.progress=false", "rollout.max_new_tokens=8", "prompt:prompt.dev_samples=4",
                 "prompt:prompt.variants=[{name: plain}, {name: one-shot, shots: 1}]",
                 "sft:train.max_steps=2", "sft:placement.num_workers=1", "sft:train.eval_every=0",
                 "grpo:rlhf.steps=2", "grpo:rlhf.prompts_per_step=2", "grpo:rlhf.samples_per_prompt=2",
                 "grpo:train.micro_batch_size=4", "grpo:rlhf.save_every=1"]
    root = tmp_path / "story"

    summary = run_quickstart(str(root), overrides, eval_sets=held)
    assert list(summary["models"]) == ["base", "prompt", "sft", "grpo"]
    for figures in summary["models"].values():
        assert set(figures) == set(held) and all(f["prompts"] == 6 for f in figures.values())
    assert (root / "sft" / "merged" / "config.json").is_file()          # GRPO started from the merged SFT model
    assert (root / "prompt" / "prompt.json").is_file() and (root / "report.html").is_file()
    written = {p: p.stat().st_mtime for p in root.glob("*/eval/*.json")}
    assert len(written) == 8

    capsys.readouterr()
    run_quickstart(str(root), overrides, eval_sets=held)
    out = capsys.readouterr().out
    assert out.count("done already") == 3 + 4, out                     # three stages, four models' evals
    assert {p: p.stat().st_mtime for p in root.glob("*/eval/*.json")} == written

    shutil.rmtree(root / "grpo" / "final")                              # as if killed while exporting
    (root / "grpo" / "report.json").unlink()
    run_quickstart(str(root), overrides, eval_sets=held)
    out = capsys.readouterr().out
    assert "[rlhf] resumed from" in out and "grpo: done already" not in out
    assert (root / "grpo" / "final" / "adapter_config.json").is_file()
    assert all((root / "grpo" / "eval" / p.name).stat().st_mtime > written[p]
               for p in written if p.parent.parent.name == "grpo")        # the new model was evaluated again
