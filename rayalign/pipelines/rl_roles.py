"""The RL run's actors, started on one placement group, and the few calls the controller makes.

`RlRoles` owns every group (policy trainers, rollout workers, reward worker, and when the
algorithm needs them a critic and a reference) and the placement group under them;
closing it frees all of them. With `rollout.sleep` (colocated GPUs) the engines and the
trainers take turns with the GPU memory: `generate` hands it to the engines and back, and
the controller calls `before_sync` so the sleeping engines can take new weights.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import ray
import torch

from rayalign.config import ConfigError, ModelConfig, RunConfig, TrainConfig
from rayalign.data.rollout_batch import StepData
from rayalign.data.rollouts import Sample
from rayalign.engines.generation import RayRanks
from rayalign.engines.weight_sync import backend_for
from rayalign.models.loading import adapter_base
from rayalign.models.registry import resolve_model
from rayalign.workers.group import ActorGroup, gather_groups, reserve
from rayalign.workers.placement import (CRITIC, REFERENCE, REWARD, ROLLOUT, TRAINER, bundle_nodes,
                                        engines_on_one_node, plan_placement)
from rayalign.workers.reference import ReferenceWorker
from rayalign.workers.reward import RewardWorker, score_on
from rayalign.workers.rollout import RolloutWorker, generate_split, launch_split
from rayalign.workers.trainer import TrainerSpec, setup_trainers, trainer_actors


@dataclass
class BatchShape:
    mini_batch: int      # samples per optimizer step
    accumulation: int    # micro-batches per rank per optimizer step


@dataclass
class Generated:
    parts: list                  # references to each rollout worker's RolloutPart
    sizes: list[int]             # samples in each part
    summary: dict[str, list]     # per sample: prompt_lengths, response_lengths, finished


def batch_shape(config: RunConfig) -> BatchShape:
    """How a step's rollouts split into optimizer steps, ranks and micro-batches."""
    rl, world, micro = config.rlhf, config.placement.num_workers, config.train.micro_batch_size
    rollouts = rl.prompts_per_step * rl.samples_per_prompt
    if rl.algorithm in ("grpo", "rloo") and rl.samples_per_prompt < 2:
        raise ConfigError(f"rlhf.samples_per_prompt must be at least 2 for {rl.algorithm} (it compares samples "
                         "of the same prompt)")
    if rollouts % rl.mini_batches:
        raise ConfigError(f"rlhf.mini_batches ({rl.mini_batches}) must divide the {rollouts} rollouts of a step "
                         "(prompts_per_step x samples_per_prompt)")
    mini_batch = rollouts // rl.mini_batches
    if mini_batch % (world * micro):
        raise ConfigError(f"a mini-batch of {mini_batch} rollouts must split evenly over placement.num_workers "
                         f"({world}) x train.micro_batch_size ({micro})")
    if rl.max_staleness and config.placement.colocate:
        raise ConfigError(f"rlhf.max_staleness ({rl.max_staleness}) generates while the trainers update: it needs "
                         "the rollout workers on devices of their own (placement.colocate: false)")
    return BatchShape(mini_batch, mini_batch // (world * micro))


def policy_model_folder(config: RunConfig) -> str:
    """The folder the rollout engines load: the base model (a LoRA policy's adapter follows by sync)."""
    folder = resolve_model(config.model.name_or_path)
    base = adapter_base(folder)
    if base is not None:
        raise ConfigError(f"model.name_or_path {config.model.name_or_path!r} is a LoRA adapter and model.parent is "
                         "continue: RL starts from a full model; use model.parent: merge (the default)")
    return folder


def shares_prompts(config: RunConfig) -> bool:
    """Whether the policy's forwards run each distinct prompt once (`rlhf.share_prompts`); not
    under gradient checkpointing, which drops the cache the responses attend to."""
    return config.rlhf.share_prompts and not config.model.gradient_checkpointing


def weight_sync_mode(config: RunConfig, on_gpu: bool) -> str:
    """full for full-weight policies; for LoRA, rollout.lora_sync with auto resolved."""
    if config.model.lora is None:
        return "full"
    if config.rollout.lora_sync == "auto":
        return "adapter" if on_gpu else "merged"
    return config.rollout.lora_sync


def weight_sync_transport(config: RunConfig, on_gpu: bool) -> str:
    """rollout.sync, except where trainer rank 0 and an engine share a GPU (colocated on GPUs):
    NCCL cannot join two ranks of one GPU, so weights go through the object store there."""
    return "object_store" if on_gpu and config.placement.colocate else config.rollout.sync


class RlRoles:
    """Places every role's actors (cheap), then, unless `start` is False, loads the models."""

    def __init__(self, config: RunConfig, shape: BatchShape, first_step: int = 0, start: bool = True):
        self.config = config
        self.groups: list[ActorGroup] = []
        self.trainers = self.critic = self.reference = None
        bundles, slots = plan_placement(config)
        on_gpu = slots[ROLLOUT].gpus + slots[ROLLOUT].engine_gpus > 0
        self.sync_mode = weight_sync_mode(config, on_gpu)
        self.sync_transport = weight_sync_transport(config, on_gpu)
        self.sync_backend = backend_for(on_gpu)
        self.placement = reserve(bundles, config.placement.timeout_s, "RL run")
        try:
            self._place(slots)
            if start:
                self._start(shape, first_step)
        except BaseException:
            self.close()
            raise

    @functools.cached_property
    def folder(self) -> str:
        """What the rollout engines and the reference load."""
        return policy_model_folder(self.config)

    def _group(self, actor_class, role: str, slot, args_for_rank) -> ActorGroup:
        group = ActorGroup(actor_class, role, len(slot.bundles), slot.cpus, slot.gpus, self.config.placement.timeout_s,
                           args_for_rank, placement=self.placement, bundles=slot.bundles)
        self.groups.append(group)
        return group

    def _place(self, slots: dict) -> None:
        config, placement = self.config, self.config.placement
        self.threads = max(int(placement.cpus_per_worker), 1)
        engines = slots[ROLLOUT].engine_bundles   # tensor-parallel engines: their ranks' bundles
        if engines:
            engines_on_one_node(engines, bundle_nodes(self.placement))
        self.rollout = self._group(RolloutWorker, ROLLOUT, slots[ROLLOUT], lambda rank: (
            rank, RayRanks(engines[rank], slots[ROLLOUT].engine_gpus) if engines else None))
        self.reward = self._group(RewardWorker, REWARD, slots[REWARD], lambda rank: (config.rewards,))
        for role in (TRAINER, CRITIC):
            if role in slots:
                slot = slots[role]
                group = trainer_actors(role, placement, config.seed, slot.cpus, slot.gpus, self.placement,
                                       slot.bundles, self.threads)
                self.groups.append(group)
                setattr(self, "trainers" if role == TRAINER else "critic", group)
        if REFERENCE in slots:
            self.reference = self._group(ReferenceWorker, REFERENCE, slots[REFERENCE], lambda rank: (
                self.folder, config.model.dtype, self.threads))

    def where(self) -> dict[str, list[dict]]:
        """Where every actor of every role landed (node, GPU ids, resources)."""
        return {group.role: group.call("where") for group in self.groups}

    def _start(self, shape: BatchShape, first_step: int) -> None:
        config, rl, placement = self.config, self.config.rlhf, self.config.placement
        optimizer_steps = rl.steps * rl.update_epochs * rl.mini_batches
        train = config.train.model_copy(update={"gradient_accumulation_steps": shape.accumulation})
        options = {"clip_range": rl.clip_range, "clip_range_high": rl.clip_range_high, "kl_coef": rl.kl_coef,
                   "kl_estimator": rl.kl_estimator, "kl_in_reward": rl.kl_in_reward, "entropy_coef": rl.entropy_coef,
                   "importance_cap": rl.importance_cap}

        # The rollout engines load while the trainers build (the calls return at once).
        lora_rank = config.model.lora.r if self.sync_mode == "adapter" else None
        rollout = config.rollout.model_copy(update={"max_model_len": config.rollout.max_model_len
                                                    or config.data.max_length})
        engines_ready = [a.setup.remote(rollout.engine, self.folder, rollout, config.seed + 1000 * first_step, lora_rank)
                         for a in self.rollout.actors]
        self.counts = setup_trainers(self.trainers, TrainerSpec(config.model, train, optimizer_steps, "policy",
                                                                options, "causal_lm"), placement)
        if self.critic is not None:
            critic = config.critic
            model = ModelConfig(name_or_path=critic.name_or_path or config.model.name_or_path, lora=critic.lora,
                                gradient_checkpointing=config.model.gradient_checkpointing)
            critic_train: TrainConfig = train.model_copy(update={"lr": critic.lr})
            setup_trainers(self.critic, TrainerSpec(model, critic_train, optimizer_steps, "critic",
                                                    {"value_clip": critic.value_clip}, "value"), placement)
        if self.reference is not None:
            self.reference.call("setup")
        self.reward.call("where")  # a reward source that cannot be built fails here, before any rollout
        self.rollout.gather(engines_ready, "setup")
        if self.sync_transport == "collective":
            self._join_weight_group()

    def _join_weight_group(self) -> None:
        """Trainer rank 0 and every rollout engine form the weight-sync group (once per run);
        rank 0 lists what each sync will send."""
        rollout, trainer = self.config.rollout, self.trainers.actors[0]
        world, timeout = 1 + len(self.rollout), rollout.sync_timeout_s
        address, port = self.trainers.gather([trainer.open_weight_group.remote(world, timeout)], "weight-sync store")[0]
        joins = [a.join_weight_group.remote(address, port, 1 + rank, world, self.sync_backend, timeout)
                 for rank, a in enumerate(self.rollout.actors)]
        gather_groups([(self.trainers, [trainer.join_weight_group.remote(world, self.sync_backend, timeout)]),
                       (self.rollout, joins)], "joining the weight-sync group (rollout.sync_timeout_s)", timeout)
        self.manifest = self.trainers.call("weight_manifest", self.sync_mode, rollout.dtype)[0]

    # ------------------------------------------------------------------ calls
    def generate(self, prompts: list[list[int]], n: int, greedy: bool = False) -> list[list[Sample]]:
        """n samples per prompt, the prompts split over the rollout workers in order. With
        rollout.sleep the GPUs' memory goes to the engines for the call, then back to the trainers."""
        self._engines_turn()
        samples = generate_split(self.rollout, prompts, n, greedy)
        self._trainers_turn()
        return samples

    def launch_generation(self, prompts: list[list[int]], n: int) -> list:
        """Start sampling n per prompt on the rollout workers: per worker, the references of
        its RolloutPart and of that part's summary (for `collect_generation`). With
        rollout.sleep the engines have the GPUs until `collect_generation`."""
        self._engines_turn()
        return launch_split(self.rollout, prompts, "generate_part", n)

    def collect_generation(self, launched: list) -> Generated:
        """Wait for the summaries only; the parts stay in the object store."""
        summaries = self.rollout.gather([summary for _, summary in launched], "generate")
        self._trainers_turn()
        merged = {key: [value for s in summaries for value in s[key]] for key in summaries[0]}
        return Generated([part for part, _ in launched], [len(s["finished"]) for s in summaries], merged)

    def score(self, prompts: list, completions: list[str], metadata: list[dict]) -> tuple[list[float], dict]:
        return score_on(self.reward, prompts, completions, metadata)

    def score_parts(self, prompts: list, metadata: list[dict], samples: int, parts: list) -> tuple[list[float], dict]:
        """Rewards of a step's samples; the reward worker reads their texts from the parts."""
        return self.reward.gather([self.reward.actors[0].score_parts.remote(prompts, metadata, samples, *parts)],
                                  "score")[0]

    def forward_rows(self, group: ActorGroup, data: StepData, objective: str, key: str, micro: int,
                     rows: int) -> tuple[list[int], list]:
        """A per-token forward (log-probs, reference log-probs, values) of every row, computed
        where the model is: rank r takes a contiguous share, all ranks the same number of
        micro-batches (ZeRO-3 forwards are collective). Returns the blocks' starts and references."""
        world = len(group)
        share = -(-rows // world)
        rounds = -(-share // micro)
        layout, blocks = data.for_workers(share_prompts=key == "logprobs" and shares_prompts(self.config))
        starts, refs = [], []
        for rank, actor in enumerate(group.actors):
            mine = list(range(rank * share, min(rows, (rank + 1) * share)))
            batches = [mine[i:i + micro] for i in range(0, len(mine), micro)]
            batches += [batches[0] if batches else [0]] * (rounds - len(batches))
            starts.append(rank * share)
            refs.append(actor.forward_rows.remote(objective, key, batches, len(mine), layout, *blocks))
        return starts, refs

    def reference_rows(self, data: StepData, micro: int, rows: int) -> tuple[list[int], list]:
        if self.reference is None:  # LoRA: the trainer's base with the adapter off
            return self.forward_rows(self.trainers, data, "reference_logprobs", "logprobs", micro, rows)
        return self.forward_rows(self.reference, data, "logprobs", "logprobs", micro, rows)

    def fetch(self, data: StepData, name: str, what: str) -> torch.Tensor:
        """A per-token field as one [rows, width] tensor in the controller (PPO's values, the KL
        in the reward); gathering it also surfaces a failed forward with its role."""
        group = {"old_values": self.critic, "ref_logprobs": self.reference}.get(name) or self.trainers
        return torch.cat(group.gather(data.refs[name], what))

    # ------------------------------------------- colocated GPUs taking turns (rollout.sleep)
    def _engines_turn(self) -> None:
        """The trainers move their optimizer states to CPU memory; the engines bring back
        their KV cache (and their weights, if no sync woke them)."""
        if self.config.rollout.sleep:
            self._trainer_groups_call("offload_optimizer_states")
            self.rollout.call("wake", ("weights", "kv_cache"))

    def _trainers_turn(self) -> None:
        """The engines sleep (weights to CPU memory, KV cache freed) while the trainers run
        their forward passes and the update, with their optimizer states back."""
        if self.config.rollout.sleep:
            self.rollout.call("sleep")
            self._trainer_groups_call("reload_optimizer_states")

    def before_sync(self) -> None:
        """With rollout.sleep: the sleeping engines bring back their weights to receive the new ones."""
        if self.config.rollout.sleep:
            self.rollout.call("wake", ("weights",))

    def _trainer_groups_call(self, method: str) -> None:
        for group in filter(None, (self.trainers, self.critic)):
            group.call(method)

    def sync_weights(self, version: int) -> float:
        """Send the trainers' weights to every rollout engine (adapter, merged or full); returns seconds.

        collective: every trainer rank walks its weights (joining ZeRO-3 gathers) while rank 0
        broadcasts them bucket by bucket and every engine receives, all within the sync timeout.
        object_store: rank 0's weights as files, through the object store."""
        started, rollout = time.perf_counter(), self.config.rollout
        what = f"weight sync (version {version}, {self.sync_mode}, rollout.sync_timeout_s)"
        if self.sync_transport == "collective":
            bucket = int(rollout.sync_bucket_mb * 2**20)
            sends = [a.send_weights.remote(self.sync_mode, self.manifest, bucket) for a in self.trainers.actors]
            receives = [a.receive_weights.remote(self.manifest, self.sync_mode, version, bucket)
                        for a in self.rollout.actors]
            gather_groups([(self.trainers, sends), (self.rollout, receives)], what, rollout.sync_timeout_s)
        else:
            shared = ray.put(self.trainers.call("weights_payload", self.sync_mode, rollout.dtype)[0])
            refs = [a.load_adapter.remote(shared, version) if self.sync_mode == "adapter"
                    else a.load_weights.remote(shared) for a in self.rollout.actors]
            self.rollout.gather(refs, what, rollout.sync_timeout_s)
        return time.perf_counter() - started

    def shutdown(self) -> None:
        """Leave the trainers' process groups cleanly (after a successful run)."""
        for group in filter(None, (self.trainers, self.critic)):
            group.call("shutdown")

    def close(self) -> None:
        """Let the rollout engines delete their weight folders, then kill every actor and
        free the placement group; safe after a failure."""
        if self.groups:
            try:
                ray.get([a.shutdown.remote() for a in self.rollout.actors], timeout=30)
            except Exception:  # noqa: BLE001 - a dead or stuck engine must not stop the cleanup
                pass
        for group in reversed(self.groups):
            group.close()
        self.groups = []
        if self.placement is not None:
            from ray.util.placement_group import remove_placement_group

            remove_placement_group(self.placement)
            self.placement = None
