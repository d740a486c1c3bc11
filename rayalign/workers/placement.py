"""Where each RL role runs: one placement group for the run, bundles assigned per role.

split (default): the trainers have their bundles; rollout workers, the critic and the
    reference have bundles of their own (e.g. generation on its own GPUs).
colocated (`placement.colocate`): every role sits on the trainers' bundles and they share
    each bundle's devices in equal parts (rollout worker i and critic rank i with trainer i,
    the reference with trainer 0), so one GPU per rank serves all roles in turn.
The reward worker holds no devices of its own: it sits on bundle 0 and asks for nothing
(rule and HTTP rewards need none; a reward model there runs on the CPU threads it finds).
"""

from __future__ import annotations

from dataclasses import dataclass

from rayalign.config import ConfigError, RunConfig

TRAINER, ROLLOUT, CRITIC, REFERENCE, REWARD = "PolicyTrainer", "RolloutWorker", "CriticWorker", "ReferenceWorker", \
    "RewardWorker"


@dataclass
class RoleSlot:
    bundles: list[int]   # the bundle of each actor of the role
    cpus: float          # per actor
    gpus: float          # per actor


def needs_reference(config: RunConfig) -> bool:
    """A separate reference model: only for full-weight policies with a KL term (with LoRA
    the reference is the trainer's own base, adapter disabled)."""
    return config.rlhf.kl_coef > 0 and config.model.lora is None


def plan_placement(config: RunConfig) -> tuple[list[dict], dict[str, RoleSlot]]:
    """(bundles of the run's placement group, the slot of each role present)."""
    placement, rollout = config.placement, config.rollout
    world = placement.num_workers
    roles = [TRAINER, ROLLOUT] + ([CRITIC] if config.rlhf.algorithm == "ppo" else []) \
        + ([REFERENCE] if needs_reference(config) else [])
    trainer_bundle = _bundle(placement.cpus_per_worker, placement.gpus_per_worker)
    if placement.colocate:
        if rollout.num_workers > world:
            raise ConfigError(f"placement.colocate puts rollout worker i with trainer i: rollout.num_workers "
                             f"({rollout.num_workers}) cannot exceed placement.num_workers ({world})")
        share = len(roles)
        cpus, gpus = placement.cpus_per_worker / share, placement.gpus_per_worker / share
        slots = {TRAINER: RoleSlot(list(range(world)), cpus, gpus),
                 ROLLOUT: RoleSlot(list(range(rollout.num_workers)), cpus, gpus)}
        if CRITIC in roles:
            slots[CRITIC] = RoleSlot(list(range(world)), cpus, gpus)
        if REFERENCE in roles:
            slots[REFERENCE] = RoleSlot([0], cpus, gpus)
        bundles = [trainer_bundle] * world
    else:
        bundles = [trainer_bundle] * world
        slots = {TRAINER: RoleSlot(list(range(world)), placement.cpus_per_worker, placement.gpus_per_worker)}
        bundles, slots[ROLLOUT] = _more(bundles, rollout.num_workers, rollout.cpus_per_worker, rollout.gpus_per_worker)
        if CRITIC in roles:
            bundles, slots[CRITIC] = _more(bundles, world, placement.cpus_per_worker, placement.gpus_per_worker)
        if REFERENCE in roles:
            bundles, slots[REFERENCE] = _more(bundles, 1, placement.cpus_per_worker, placement.gpus_per_worker)
    slots[REWARD] = RoleSlot([0], 0.0, 0.0)
    return bundles, slots


def _bundle(cpus: float, gpus: float) -> dict:
    if cpus <= 0 and gpus <= 0:
        raise ConfigError("a worker needs some CPUs or GPUs (cpus_per_worker / gpus_per_worker)")
    return {**({"CPU": cpus} if cpus else {}), **({"GPU": gpus} if gpus else {})}


def _more(bundles: list[dict], count: int, cpus: float, gpus: float) -> tuple[list[dict], RoleSlot]:
    first = len(bundles)
    return bundles + [_bundle(cpus, gpus)] * count, RoleSlot(list(range(first, first + count)), cpus, gpus)


def location() -> dict:
    """Where the calling actor landed: node, GPU ids and the resources Ray gave it."""
    import ray

    context = ray.get_runtime_context()
    return {"node": context.get_node_id(), "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
            "resources": context.get_assigned_resources()}
