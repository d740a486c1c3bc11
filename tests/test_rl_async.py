"""Asynchronous, off-policy RL (`rlhf.max_staleness`): with k = 1 the rollout workers generate
the next batch while the trainers update, on a split placement; the tiny task is still learned,
no batch is staler than k, the importance weights are 1 on on-policy data, and k = 0 keeps the
on-policy loop."""

from __future__ import annotations

import json

import pytest

from rayalign.config import ConfigError
from rayalign.pipelines.rl_roles import batch_shape
from rayalign.pipelines.rlhf import run_rlhf
from test_rlhf_pipeline import tiny_rl_config

SPLIT = ["placement.colocate=false", "placement.cpus_per_worker=1", "rollout.cpus_per_worker=1"]


def step_metrics(run_dir) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [m for m in map(json.loads, lines) if "reward/total_mean" in m]


def test_staleness_needs_a_split_placement(tiny_model, prompt_file, tmp_path):
    config = tiny_rl_config(tmp_path, tiny_model, prompt_file, overrides=["rlhf.max_staleness=1"])
    with pytest.raises(ConfigError, match="max_staleness.*placement.colocate: false"):
        batch_shape(config)


def test_one_step_off_policy_learns_and_stays_within_its_staleness(ray_cluster, tiny_model, prompt_file,
                                                                     tmp_path):
    for name in ("k0", "k1"):
        (tmp_path / name).mkdir()
    on_policy = tiny_rl_config(tmp_path / "k0", tiny_model, prompt_file, overrides=[*SPLIT, "rlhf.steps=2"])
    run_rlhf(on_policy)
    baseline = step_metrics(on_policy.run_dir)
    assert [m["rollout/staleness"] for m in baseline] == [0, 0]
    assert not any("train/is_weight_mean" in m for m in baseline), "k = 0 must not reweigh its samples"

    config = tiny_rl_config(tmp_path / "k1", tiny_model, prompt_file, overrides=[*SPLIT, "rlhf.max_staleness=1"])
    report = run_rlhf(config)
    steps = step_metrics(config.run_dir)
    assert len(steps) == 30
    # batch 0 comes from the untrained policy in both runs, with the same engine seed
    assert steps[0]["reward/total_mean"] == baseline[0]["reward/total_mean"]
    # batch 0 is on-policy; every later batch was sampled one update before it was trained on
    assert [m["rollout/staleness"] for m in steps] == [0] + [1] * 29
    assert steps[0]["train/is_weight_mean"] == pytest.approx(1.0, abs=1e-3)
    assert steps[0]["train/is_weight_max"] == pytest.approx(1.0, abs=1e-3)
    assert max(abs(m["train/is_weight_mean"] - 1) for m in steps[1:]) > 1e-3, "stale batches were not reweighed"
    rewards = [m["reward/total_mean"] for m in steps]
    assert sum(rewards[-5:]) / 5 > sum(rewards[:5]) / 5 + 0.1, rewards
    assert report["eval_after"]["eval/reward"] > report["eval_before"]["eval/reward"]
