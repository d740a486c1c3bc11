"""Every RL role lands on the bundles the config says, checked on logical GPUs."""

from __future__ import annotations

import pytest
import ray

from rayalign.config import ConfigError, RunConfig
from rayalign.engines.generation import RayRanks, ray_executor_environment
from rayalign.pipelines.rl_roles import RlRoles, batch_shape
from rayalign.workers.placement import (CRITIC, REFERENCE, REWARD, ROLLOUT, TRAINER, engines_on_one_node,
                                        location, plan_placement)


def rl_config(tmp_path, **sections) -> RunConfig:
    tree = {"method": "rlhf", "name": "placement", "output_dir": str(tmp_path), "data": {"train": "unused.jsonl"},
            "rewards": [{"type": "function", "path": "rl_rewards:digit_share"}],
            "placement": {"num_workers": 2, "cpus_per_worker": 0.25, "gpus_per_worker": 1, "timeout_s": 60},
            "rollout": {"num_workers": 2, "cpus_per_worker": 0.25, "gpus_per_worker": 1}}
    for key, value in sections.items():
        tree[key] = {**tree.get(key, {}), **value}
    return RunConfig.model_validate(tree)


def gpus(locations: list[dict]) -> list[list[str]]:
    return [loc["gpu_ids"] for loc in locations]


def test_split_placement_gives_each_role_its_own_gpus(ray_cluster, tmp_path):
    config = rl_config(tmp_path)
    roles = RlRoles(config, batch_shape(config), start=False)
    try:
        where = roles.where()
    finally:
        roles.close()
    trainer, rollout = gpus(where[TRAINER]), gpus(where[ROLLOUT])
    assert all(len(ids) == 1 for ids in trainer + rollout)
    assert len({ids[0] for ids in trainer + rollout}) == 4  # four distinct devices
    assert where[REWARD][0]["gpu_ids"] == []


def test_colocated_roles_share_the_trainers_devices(ray_cluster, tmp_path):
    config = rl_config(tmp_path, placement={"colocate": True, "cpus_per_worker": 0.5},
                       rlhf={"algorithm": "ppo", "kl_coef": 0.05})
    _, slots = plan_placement(config)
    assert slots[TRAINER].gpus == slots[ROLLOUT].gpus == slots[CRITIC].gpus == slots[REFERENCE].gpus == 0.25
    roles = RlRoles(config, batch_shape(config), start=False)
    try:
        where = roles.where()
    finally:
        roles.close()
    trainer = gpus(where[TRAINER])
    assert len({ids[0] for ids in trainer}) == 2
    assert gpus(where[ROLLOUT]) == trainer   # rollout worker i on trainer i's device
    assert gpus(where[CRITIC]) == trainer
    assert gpus(where[REFERENCE]) == [trainer[0]]


def test_placement_errors_name_the_keys(tmp_path):
    from rayalign.config import ConfigError

    with pytest.raises(ConfigError, match="rollout.num_workers"):
        plan_placement(rl_config(tmp_path, placement={"colocate": True}, rollout={"num_workers": 3}))
    with pytest.raises(ConfigError, match="samples_per_prompt"):
        batch_shape(rl_config(tmp_path, rlhf={"samples_per_prompt": 1}))
    with pytest.raises(ConfigError, match="micro_batch_size"):
        batch_shape(rl_config(tmp_path, rlhf={"prompts_per_step": 3, "samples_per_prompt": 2},
                              train={"micro_batch_size": 2}))


@ray.remote
class VllmWorkerStandIn:
    """Asks for what vLLM's Ray executor asks for each rank of an engine: no CPU and
    VLLM_RAY_PER_WORKER_GPUS GPUs on its bundle of VLLM_RAY_BUNDLE_INDICES (vLLM is not started)."""

    def where(self) -> dict:
        return location()


def tensor_parallel_ranks(roles: RlRoles, engine_where: dict) -> list[dict]:
    """Where the vLLM workers of one engine land, given the environment the engine sets."""
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    env = ray_executor_environment(RayRanks(engine_where["engine_bundles"], roles_slot(roles).engine_gpus))
    share = float(env["VLLM_RAY_PER_WORKER_GPUS"])
    workers = [VllmWorkerStandIn.options(num_cpus=0, num_gpus=share, scheduling_strategy=PlacementGroupSchedulingStrategy(
        roles.placement, placement_group_bundle_index=int(bundle))).remote()
        for bundle in env["VLLM_RAY_BUNDLE_INDICES"].split(",")]
    try:
        return ray.get([w.where.remote() for w in workers], timeout=60)
    finally:
        for worker in workers:
            ray.kill(worker)


def roles_slot(roles: RlRoles):
    return plan_placement(roles.config)[1][ROLLOUT]


def test_tensor_parallel_engines_plan_bundles_of_their_own(tmp_path):
    config = rl_config(tmp_path, rollout={"tensor_parallel_size": 2})   # 2 trainers + 2 engines x 2 GPUs
    bundles, slots = plan_placement(config)
    assert bundles[2:] == [{"CPU": 0.25, "GPU": 1}, {"GPU": 1}] * 2   # the engine's process needs the CPUs
    rollout = slots[ROLLOUT]
    assert rollout.engine_bundles == [[2, 3], [4, 5]] and rollout.bundles == [2, 4]
    assert (rollout.gpus, rollout.engine_gpus) == (0.0, 1)   # the workers hold the GPUs, not the actor


def placed_engine_ranks(config) -> tuple[dict, list[dict]]:
    """Where every role landed, and where the first engine's tensor-parallel workers would."""
    roles = RlRoles(config, batch_shape(config), start=False)
    try:
        where = roles.where()
        return where, tensor_parallel_ranks(roles, where[ROLLOUT][0])
    finally:
        roles.close()


def test_tensor_parallel_engine_lands_on_gpus_apart_from_the_trainers(ray_cluster, tmp_path):
    config = rl_config(tmp_path, rollout={"num_workers": 1, "tensor_parallel_size": 2})
    where, ranks = placed_engine_ranks(config)
    assert where[ROLLOUT][0]["engine_bundles"] == [2, 3] and where[ROLLOUT][0]["gpu_ids"] == []
    rank_gpus = [ids[0] for ids in gpus(ranks)]
    assert len(set(rank_gpus)) == 2 and not set(rank_gpus) & {ids[0] for ids in gpus(where[TRAINER])}
    assert len({r["node"] for r in ranks} | {where[ROLLOUT][0]["node"]}) == 1


def test_colocated_tensor_parallel_engines_share_consecutive_trainers_gpus(ray_cluster, tmp_path):
    planned = rl_config(tmp_path, placement={"num_workers": 4, "colocate": True},
                        rollout={"tensor_parallel_size": 2, "sleep": True})
    slot = plan_placement(planned)[1][ROLLOUT]
    assert slot.engine_bundles == [[0, 1], [2, 3]] and slot.engine_gpus == 0.5   # engine i on trainers 2i, 2i+1
    config = rl_config(tmp_path, placement={"colocate": True}, rollout={"num_workers": 1, "tensor_parallel_size": 2,
                                                                      "sleep": True})
    where, ranks = placed_engine_ranks(config)
    assert gpus(ranks) == gpus(where[TRAINER])   # rank k on trainer k's GPU
    assert all(r["resources"]["GPU"] == 0.5 for r in ranks)


def test_tensor_parallel_and_sleep_errors_name_the_keys(tmp_path):
    with pytest.raises(ConfigError, match="tensor_parallel_size.*on CPU"):
        plan_placement(rl_config(tmp_path, rollout={"tensor_parallel_size": 2, "gpus_per_worker": 0}))
    with pytest.raises(ConfigError, match="rollout.gpus_per_worker to 1"):
        plan_placement(rl_config(tmp_path, rollout={"tensor_parallel_size": 2, "gpus_per_worker": 0.5}))
    with pytest.raises(ConfigError, match="rollout.engine: vllm"):
        plan_placement(rl_config(tmp_path, rollout={"tensor_parallel_size": 2, "engine": "hf"}))
    with pytest.raises(ConfigError, match=r"rollout.num_workers \(2\) x rollout.tensor_parallel_size \(2\)"):
        plan_placement(rl_config(tmp_path, placement={"colocate": True}, rollout={"tensor_parallel_size": 2}))
    with pytest.raises(ConfigError, match="placement.colocate: true"):
        plan_placement(rl_config(tmp_path, rollout={"sleep": True}))
    with pytest.raises(ConfigError, match="not on CPU"):
        plan_placement(rl_config(tmp_path, placement={"colocate": True, "gpus_per_worker": 0},
                                 rollout={"sleep": True}))
    from vllm.platforms import current_platform

    assert not current_platform.is_sleep_mode_available()   # what vLLM checks before it refuses sleep mode
    with pytest.raises(ConfigError, match="train.zero_stage"):
        plan_placement(rl_config(tmp_path, placement={"colocate": True}, rollout={"sleep": True},
                                 train={"zero_stage": 0}))


def test_an_engine_spread_over_nodes_is_an_error():
    engines_on_one_node([[0, 1], [2, 3]], {0: "a", 1: "a", 2: "b", 3: "b"})
    with pytest.raises(ConfigError, match=r"rollout engine 1: its tensor-parallel bundles \[2, 3\] landed on 2 nodes"):
        engines_on_one_node([[0, 1], [2, 3]], {0: "a", 1: "a", 2: "a", 3: "b"})
