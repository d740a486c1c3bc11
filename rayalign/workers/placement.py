"""Where each RL role runs: one placement group for the run, bundles assigned per role.

split (default): the trainers have their bundles; rollout workers, the critic and the
    reference have bundles of their own (e.g. generation on its own GPUs).
colocated (`placement.colocate`): every role sits on the trainers' bundles and they share
    each bundle's devices in equal parts (rollout worker i and critic rank i with trainer i,
    the reference with trainer 0), so one GPU per rank serves all roles in turn.
The reward worker holds no devices of its own: it sits on bundle 0 and asks for nothing
(rule and HTTP rewards need none; a reward model there runs on the CPU threads it finds).

Tensor-parallel rollout engines (`rollout.tensor_parallel_size` N > 1, GPU only): each engine
spans N one-GPU bundles (split: N bundles of its own; colocated: trainers i*N .. i*N+N-1).
The rollout worker sits on the first with CPUs and no GPU; vLLM's Ray executor starts one
worker per rank on those bundles (rayalign.engines.generation.RayRanks). The bundles of one
engine must land on one node, checked once the placement group is ready.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rayalign.config import ConfigError, RunConfig

TRAINER, ROLLOUT, CRITIC, REFERENCE, REWARD = "PolicyTrainer", "RolloutWorker", "CriticWorker", "ReferenceWorker", \
    "RewardWorker"


@dataclass
class RoleSlot:
    bundles: list[int]   # the bundle of each actor of the role
    cpus: float          # per actor
    gpus: float          # per actor
    # Tensor-parallel engines only: the bundles of each engine's vLLM workers (one per rank)
    # and each worker's GPU share.
    engine_bundles: list[list[int]] = field(default_factory=list)
    engine_gpus: float = 0.0


def needs_reference(config: RunConfig) -> bool:
    """A separate reference model: only for full-weight policies with a KL term (with LoRA
    the reference is the trainer's own base, adapter disabled)."""
    return config.rlhf.kl_coef > 0 and config.model.lora is None


def plan_placement(config: RunConfig) -> tuple[list[dict], dict[str, RoleSlot]]:
    """(bundles of the run's placement group, the slot of each role present)."""
    check_rollout_engine(config)
    placement, rollout = config.placement, config.rollout
    world, ranks = placement.num_workers, rollout.tensor_parallel_size
    roles = [TRAINER, ROLLOUT] + ([CRITIC] if config.rlhf.algorithm == "ppo" else []) \
        + ([REFERENCE] if needs_reference(config) else [])
    trainer_bundle = _bundle(placement.cpus_per_worker, placement.gpus_per_worker)
    if placement.colocate:
        if rollout.num_workers * ranks > world:
            raise ConfigError(f"placement.colocate puts rollout worker i with trainer i (its {ranks} tensor-parallel "
                             f"ranks on trainers i*{ranks} onwards): rollout.num_workers ({rollout.num_workers}) x "
                             f"rollout.tensor_parallel_size ({ranks}) cannot exceed placement.num_workers ({world})")
        share = len(roles)
        cpus, gpus = placement.cpus_per_worker / share, placement.gpus_per_worker / share
        slots = {TRAINER: RoleSlot(list(range(world)), cpus, gpus),
                 ROLLOUT: _engines([[i * ranks + k for k in range(ranks)] for i in range(rollout.num_workers)],
                                   cpus, gpus)}
        if CRITIC in roles:
            slots[CRITIC] = RoleSlot(list(range(world)), cpus, gpus)
        if REFERENCE in roles:
            slots[REFERENCE] = RoleSlot([0], cpus, gpus)
        bundles = [trainer_bundle] * world
    else:
        bundles = [trainer_bundle] * world
        slots = {TRAINER: RoleSlot(list(range(world)), placement.cpus_per_worker, placement.gpus_per_worker)}
        if ranks == 1:
            bundles, slots[ROLLOUT] = _more(bundles, rollout.num_workers, rollout.cpus_per_worker,
                                            rollout.gpus_per_worker)
        else:  # the engine's process needs CPUs, its vLLM workers one GPU each (they ask for no CPU)
            first = len(bundles)
            bundles = bundles + ([_bundle(rollout.cpus_per_worker, 1)] + [_bundle(0, 1)] * (ranks - 1)) \
                * rollout.num_workers
            slots[ROLLOUT] = _engines([[first + i * ranks + k for k in range(ranks)]
                                       for i in range(rollout.num_workers)], rollout.cpus_per_worker, 1)
        if CRITIC in roles:
            bundles, slots[CRITIC] = _more(bundles, world, placement.cpus_per_worker, placement.gpus_per_worker)
        if REFERENCE in roles:
            bundles, slots[REFERENCE] = _more(bundles, 1, placement.cpus_per_worker, placement.gpus_per_worker)
    slots[REWARD] = RoleSlot([0], 0.0, 0.0)
    return bundles, slots


def check_rollout_engine(config: RunConfig) -> None:
    """Tensor parallelism and sleep mode are GPU paths of vLLM; say which key to change."""
    placement, rollout = config.placement, config.rollout
    gpus = placement.gpus_per_worker if placement.colocate else rollout.gpus_per_worker
    gpu_key = "placement.gpus_per_worker (placement.colocate)" if placement.colocate else "rollout.gpus_per_worker"
    for key, wanted in (("rollout.tensor_parallel_size > 1", rollout.tensor_parallel_size > 1),
                        ("rollout.sleep", rollout.sleep)):
        if wanted and rollout.engine != "vllm":
            raise ConfigError(f"{key} needs rollout.engine: vllm (it is {rollout.engine!r})")
    if rollout.tensor_parallel_size > 1:
        if gpus == 0:
            raise ConfigError(f"rollout.tensor_parallel_size ({rollout.tensor_parallel_size}) splits an engine over "
                             f"GPUs and {gpu_key} is 0: on CPU an engine is one process; use rollout.num_workers "
                             "for more engines")
        if gpus != 1 or placement.gpus_per_worker > 1:
            raise ConfigError(f"with rollout.tensor_parallel_size > 1 each rank takes one whole GPU bundle and vLLM "
                             f"refuses a placement group with a bundle of more than one GPU: set {gpu_key} to 1 "
                             f"and placement.gpus_per_worker to at most 1 (they are {gpus} and "
                             f"{placement.gpus_per_worker})")
    if rollout.sleep:
        if not placement.colocate:
            raise ConfigError("rollout.sleep frees the engine's GPU memory for the trainers sharing its GPUs: it "
                             "needs placement.colocate: true")
        if gpus == 0:
            raise ConfigError("rollout.sleep needs GPUs (placement.gpus_per_worker is 0): vLLM has sleep mode on "
                             "CUDA, ROCm and XPU only, not on CPU")
        if config.train.zero_stage == 0:
            raise ConfigError("rollout.sleep offloads the trainers' optimizer states while the engine generates "
                             "(DeepSpeed offload_states): it needs train.zero_stage 1, 2 or 3")


def _engines(engine_bundles: list[list[int]], cpus: float, gpus: float) -> RoleSlot:
    """One rollout worker per engine: with one rank it holds the device itself; with more it
    sits on its first bundle without a GPU and its vLLM workers take `gpus` on every bundle."""
    first = [bundles[0] for bundles in engine_bundles]
    if all(len(bundles) == 1 for bundles in engine_bundles):
        return RoleSlot(first, cpus, gpus)
    return RoleSlot(first, cpus, 0.0, engine_bundles, gpus)


def engines_on_one_node(engine_bundles: list[list[int]], bundle_nodes: dict[int, str]) -> None:
    """Raise unless every tensor-parallel engine's bundles landed on a single node."""
    for rank, bundles in enumerate(engine_bundles):
        nodes = sorted({bundle_nodes[b] for b in bundles})
        if len(nodes) > 1:
            raise ConfigError(f"rollout engine {rank}: its tensor-parallel bundles {bundles} landed on {len(nodes)} "
                             f"nodes ({', '.join(n[:8] for n in nodes)}); rollout.tensor_parallel_size needs that "
                             "many free GPUs on one node")


def _bundle(cpus: float, gpus: float) -> dict:
    if cpus <= 0 and gpus <= 0:
        raise ConfigError("a worker needs some CPUs or GPUs (cpus_per_worker / gpus_per_worker)")
    return {**({"CPU": cpus} if cpus else {}), **({"GPU": gpus} if gpus else {})}


def _more(bundles: list[dict], count: int, cpus: float, gpus: float) -> tuple[list[dict], RoleSlot]:
    first = len(bundles)
    return bundles + [_bundle(cpus, gpus)] * count, RoleSlot(list(range(first, first + count)), cpus, gpus)


def bundle_nodes(placement_group) -> dict[int, str]:
    """The node each bundle of a ready placement group landed on."""
    from ray.util import placement_group_table

    return {int(b): node for b, node in placement_group_table(placement_group)["bundles_to_node_id"].items()}


def location() -> dict:
    """Where the calling actor landed: node, GPU ids and the resources Ray gave it."""
    import ray

    context = ray.get_runtime_context()
    return {"node": context.get_node_id(), "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
            "resources": context.get_assigned_resources()}
