"""After an update, the rollout engine (vLLM, fp32) gives its samples the log-probabilities
the trainer gives them: the weight sync carries the trained weights, in every sync mode."""

from __future__ import annotations

import random

import pytest
import ray
import torch

from rayalign.config import RunConfig
from rayalign.data.rollout_batch import StepData, rows_to_block
from rayalign.pipelines.rl_roles import RlRoles, batch_shape
from rayalign.pipelines.rlhf import update
from tiny_model import build_tiny_model

PROMPTS = [[5, 6, 7, 8], [9, 10, 11]]


@pytest.fixture(scope="module")
def vllm_tiny_model(tmp_path_factory) -> str:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-vllm"), hidden_size=128, heads=2)


def sync_config(tmp_path, model: str, lora: bool, lora_sync: str = "auto") -> RunConfig:
    return RunConfig.model_validate({
        "method": "rlhf", "name": "sync", "output_dir": str(tmp_path), "data": {"train": "unused", "max_length": 64},
        "model": {"name_or_path": model, "lora": {"r": 8, "alpha": 16} if lora else None},
        "rlhf": {"prompts_per_step": 2, "samples_per_prompt": 2},
        "rollout": {"engine": "vllm", "dtype": "float32", "max_new_tokens": 8, "lora_sync": lora_sync},
        "rewards": [{"type": "function", "path": "rl_rewards:digit_share"}],
        "train": {"micro_batch_size": 4, "lr": 0.05, "lr_scheduler": "constant"},
        "placement": {"num_workers": 1, "cpus_per_worker": 1, "colocate": True, "timeout_s": 120},
    })


def sampled(roles: RlRoles) -> tuple[StepData, dict, float]:
    """Two samples per prompt from the engine, and the largest gap between the engine's
    log-probabilities of them and the trainer's."""
    generated = roles.collect_generation(roles.launch_generation(PROMPTS, 2))
    lengths, rows = generated.summary["response_lengths"], sum(generated.sizes)
    data = StepData.of_parts(generated.parts, generated.sizes, max(lengths), 0)
    data.add("old_logprobs", *roles.forward_rows(roles.trainers, data, "logprobs", "logprobs", 4, rows))
    trainer = roles.fetch(data, "old_logprobs", "logprobs")
    engine = rows_to_block([part.behaviour(i) for part in ray.get(generated.parts) for i in range(len(part))],
                           data.width)
    return data, generated.summary, (trainer - engine).abs().max().item()


@pytest.mark.parametrize("lora, lora_sync, mode", [(True, "auto", "merged"), (True, "adapter", "adapter"),
                                                   (False, "auto", "full")])
def test_rollout_engine_matches_trainer_after_sync(ray_cluster, vllm_tiny_model, tmp_path, lora, lora_sync, mode):
    config = sync_config(tmp_path, vllm_tiny_model, lora, lora_sync)
    shape = batch_shape(config)
    roles = RlRoles(config, shape)
    try:
        assert roles.sync_mode == mode
        data, summary, gap = sampled(roles)
        assert gap < 1e-4, f"before any update, engine and trainer disagree by {gap}"

        rows, generator = len(summary["finished"]), torch.Generator().manual_seed(0)
        data.add("advantages", [0], [ray.put(torch.rand(rows, data.width, generator=generator) * 2 - 1)])
        sizes = [p + r for p, r in zip(summary["prompt_lengths"], summary["response_lengths"])]
        update(roles, data, summary["response_lengths"], sizes, shape, config.train.micro_batch_size,
               random.Random(0))
        before = roles.fetch(data, "old_logprobs", "logprobs")
        data.add("new_logprobs", *roles.forward_rows(roles.trainers, data, "logprobs", "logprobs", 4, rows))
        moved = (roles.fetch(data, "new_logprobs", "logprobs") - before).abs().max().item()
        roles.sync_weights(version=1)
        gap = sampled(roles)[2]
    finally:
        roles.close()
    assert moved > 1e-2, "the update did not change the policy"
    assert gap < 1e-4, f"after the sync, engine and trainer disagree by {gap}"
