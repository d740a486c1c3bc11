"""After an update, the rollout engine (vLLM, fp32) gives its samples the log-probabilities
the trainer gives them: the weight sync carries the trained weights, in every sync mode, by
the collective (ZeRO-2 and ZeRO-3 on two trainer ranks) and through the object store; a
rollout worker that dies during a sync is a named error within the sync timeout."""

from __future__ import annotations

import random
import time

import pytest
import ray
import torch

from rayalign.config import RunConfig
from rayalign.data.rollout_batch import StepData, rows_to_block
from rayalign.pipelines.rl_roles import RlRoles, batch_shape
from rayalign.workers.group import WorkerError
from rayalign.workers.placement import ROLLOUT
from rayalign.pipelines.rlhf import update
from tiny_model import build_tiny_model

PROMPTS = [[5, 6, 7, 8], [9, 10, 11]]


@pytest.fixture(scope="module")
def vllm_tiny_model(tmp_path_factory) -> str:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-vllm"), hidden_size=128, heads=2)


def sync_config(tmp_path, model: str, lora: bool, lora_sync: str = "auto", sync: str = "collective",
                zero_stage: int = 2, trainers: int = 1, sync_timeout_s: float = 120) -> RunConfig:
    return RunConfig.model_validate({
        "method": "rlhf", "name": "sync", "output_dir": str(tmp_path), "data": {"train": "unused", "max_length": 64},
        "model": {"name_or_path": model, "lora": {"r": 8, "alpha": 16} if lora else None},
        "rlhf": {"prompts_per_step": 2, "samples_per_prompt": 2},
        "rollout": {"engine": "vllm", "dtype": "float32", "max_new_tokens": 8, "lora_sync": lora_sync, "sync": sync,
                    "sync_bucket_mb": 0.05, "sync_timeout_s": sync_timeout_s},
        "rewards": [{"type": "function", "path": "rl_rewards:digit_share"}],
        "train": {"micro_batch_size": 4 // trainers, "lr": 0.05, "lr_scheduler": "constant", "zero_stage": zero_stage},
        "placement": {"num_workers": trainers, "cpus_per_worker": 1, "colocate": True, "timeout_s": 120},
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


@pytest.mark.parametrize("lora, lora_sync, mode, sync, zero_stage, trainers", [
    (True, "auto", "merged", "collective", 2, 1),
    (True, "adapter", "adapter", "collective", 2, 1),
    (False, "auto", "full", "collective", 2, 1),
    (True, "auto", "merged", "object_store", 2, 1),
    (True, "auto", "merged", "collective", 3, 2),
    (True, "adapter", "adapter", "collective", 3, 2),
    (False, "auto", "full", "collective", 3, 2),
])
def test_rollout_engine_matches_trainer_after_sync(ray_cluster, vllm_tiny_model, tmp_path, lora, lora_sync, mode,
                                                   sync, zero_stage, trainers):
    config = sync_config(tmp_path, vllm_tiny_model, lora, lora_sync, sync, zero_stage, trainers)
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


def test_a_rollout_worker_killed_in_a_sync_is_a_named_error_within_the_timeout(ray_cluster, vllm_tiny_model, tmp_path):
    config = sync_config(tmp_path, vllm_tiny_model, lora=False, sync_timeout_s=10)
    roles = RlRoles(config, batch_shape(config))
    try:
        # The engine is killed while it waits in a receive; the sync then meets a dead peer.
        receiving = roles.rollout.actors[0].receive_weights.remote(roles.manifest, "full", 1, 2**10)
        ray.kill(roles.rollout.actors[0])
        started = time.monotonic()
        with pytest.raises(WorkerError, match=rf"{ROLLOUT} rank 0: weight sync \(version 1.*failed: ActorDiedError"):
            roles.sync_weights(version=1)
        assert time.monotonic() - started < config.rollout.sync_timeout_s + 5
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(receiving)
    finally:
        roles.close()
