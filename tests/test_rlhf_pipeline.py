"""The RL engine end to end on a tiny random model: reward rises on a learnable reward,
every algorithm runs, checkpoints resume, and bad input fails clearly."""

from __future__ import annotations

import json

import pytest

from conftest import write_jsonl
from rayalign.config import load_config
from rayalign.pipelines.rlhf import run_rlhf

PROMPTS = ["What is 3 + 4?", "Write one short sentence about the sea.", "the quick brown fox", "Yes or No?"]


@pytest.fixture(scope="module")
def prompt_file(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("rl-data")
    return write_jsonl(folder / "prompts.jsonl",
                       [{"prompt": [{"role": "user", "content": p}], "task": "t"} for p in PROMPTS * 4])


def tiny_rl_config(tmp_path, tiny_model, prompt_file, name="tiny-rl", overrides=()):
    recipe = tmp_path / "tiny_rl.yaml"
    recipe.write_text(json.dumps({
        "method": "rlhf", "name": name, "output_dir": str(tmp_path / "runs"),
        "model": {"name_or_path": tiny_model},
        "data": {"train": prompt_file, "eval": prompt_file, "max_length": 64},
        "rlhf": {"algorithm": "grpo", "steps": 30, "prompts_per_step": 4, "samples_per_prompt": 4,
                 "eval_samples": 4},
        "rollout": {"engine": "hf", "max_new_tokens": 12, "dtype": "float32"},
        "rewards": [{"type": "function", "path": "rl_rewards:digit_share"}],
        "train": {"micro_batch_size": 8, "lr": 3e-3, "lr_scheduler": "constant", "zero_stage": 2},
        "placement": {"num_workers": 1, "cpus_per_worker": 1, "colocate": True, "timeout_s": 120},
        "logging": {"progress": False, "tensorboard": False},
    }))
    return load_config(str(recipe), list(overrides))


def rewards_of(run_dir) -> list[float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [m["reward/total_mean"] for m in map(json.loads, lines) if "reward/total_mean" in m]


def test_grpo_raises_a_learnable_reward(ray_cluster, tiny_model, prompt_file, tmp_path):
    config = tiny_rl_config(tmp_path, tiny_model, prompt_file)
    report = run_rlhf(config)
    rewards = rewards_of(config.run_dir)
    assert len(rewards) == 30
    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    assert last > first + 0.1, rewards
    assert report["eval_after"]["eval/reward"] > report["eval_before"]["eval/reward"]
    assert (config.run_dir / "final" / "model.safetensors").is_file()
