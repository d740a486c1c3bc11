"""Every RL role lands on the bundles the config says, checked on logical GPUs."""

from __future__ import annotations

import pytest

from rayalign.config import RunConfig
from rayalign.pipelines.rl_roles import RlRoles, batch_shape
from rayalign.workers.placement import CRITIC, REFERENCE, REWARD, ROLLOUT, TRAINER, plan_placement


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
