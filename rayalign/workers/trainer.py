"""Trainer: one data-parallel rank of a DeepSpeed training engine, as a Ray actor.

The same actor trains policies (SFT, DPO, RL), reward models and PPO critics; the group
names its role."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import ray
import torch

from rayalign.workers.group import ActorGroup
from rayalign.workers.placement import location


@dataclass
class TrainerSpec:
    """What every rank of a trainer group builds."""

    model: object          # ModelConfig
    train: object          # TrainConfig
    total_steps: int       # optimizer steps, for the LR schedule
    objective: str         # a name of workers/objectives.py
    options: dict
    head: str              # causal_lm | reward | value


@ray.remote
class Trainer:
    def __init__(self, rank: int, world_size: int, seed: int, threads: int):
        self.rank, self.world_size = rank, world_size
        torch.set_num_threads(max(threads, 1))
        torch.manual_seed(seed + rank)
        self.engine = self.store = self.weight_store = self.weight_group = None

    def where(self) -> dict:
        return location()

    def rendezvous(self, timeout_s: float) -> tuple[str, int]:
        """Rank 0 opens the process group's store; returns its address for the others."""
        from rayalign.engines.distributed import open_store

        address = ray.util.get_node_ip_address()
        self.store = open_store(address, self.world_size, timeout_s)
        return address, self.store.port

    def setup(self, model_config, train_config, total_steps: int, objective: str, options: dict, head: str,
              master: tuple[str, int], backend: str, timeout_s: float) -> str:
        from rayalign.engines.distributed import init_process_group
        from rayalign.engines.training import TrainingEngine
        from rayalign.models.adapt import build_trainable
        from rayalign.workers.objectives import make_objective

        init_process_group(self.rank, self.world_size, master[0], master[1], backend, timeout_s=timeout_s,
                           store=self.store)
        model, counts = build_trainable(model_config, head)
        self.engine = TrainingEngine(model, train_config, total_steps, self.world_size, model_config.dtype)
        self.objective = make_objective(objective, options)
        return counts

    def train_step(self, micro_batches: list[dict]) -> dict:
        return self.engine.train_step(micro_batches, self.objective)

    def train_rows(self, batches: list[list[int]], normaliser: float, fields: tuple[str, ...], layout,
                   *blocks) -> dict:
        """One optimizer step on micro-batches of a step's rows, collated here from its blocks."""
        from rayalign.workers.step_rows import training_batches

        return self.train_step(training_batches(batches, normaliser, fields, layout, blocks))

    def forward_rows(self, objective: str, key: str, batches: list[list[int]], keep: int, layout, *blocks):
        from rayalign.workers.step_rows import forward_rows

        return forward_rows(self.evaluate, objective, key, batches, keep, layout, blocks)

    def offload_optimizer_states(self) -> None:
        self.engine.offload_optimizer_states()

    def reload_optimizer_states(self) -> None:
        self.engine.reload_optimizer_states()

    def evaluate(self, batches: list[dict], objective: str | None = None) -> list[dict]:
        """Stats of the training objective, or of another named one (e.g. pair_logprobs)."""
        from rayalign.workers.objectives import make_objective

        return self.engine.evaluate(batches, make_objective(objective, {}) if objective else self.objective)

    def save_checkpoint(self, folder: str) -> None:
        from rayalign.engines.training import checkpoint_writing

        self.engine.save_checkpoint(folder)
        with checkpoint_writing(folder):
            torch.save(torch.get_rng_state(), Path(folder) / f"rng-rank{self.rank}.pt")

    def load_checkpoint(self, folder: str) -> None:
        self.engine.load_checkpoint(folder)
        rng = Path(folder) / f"rng-rank{self.rank}.pt"
        if rng.is_file():
            torch.set_rng_state(torch.load(rng))

    def weights_payload(self, mode: str, dtype: str | None = None) -> dict[str, bytes] | None:
        """Rank 0's trained weights as files in memory for the rollout engines (see
        models/export.py for the modes); all ranks join a ZeRO-3 gather."""
        from rayalign.models.export import weights_payload
        from rayalign.models.loading import DTYPES

        with self.engine.full_parameters() as module:
            if self.rank == 0:
                return weights_payload(module, mode, DTYPES[dtype] if dtype else None)
        return None

    def open_weight_group(self, world_size: int, timeout_s: float) -> tuple[str, int]:
        """Rank 0 opens the weight-sync group's store (separate from the training group's)."""
        from rayalign.engines.distributed import open_store

        address = ray.util.get_node_ip_address()
        self.weight_store = open_store(address, world_size, timeout_s)
        return address, self.weight_store.port

    def join_weight_group(self, world_size: int, backend: str, timeout_s: float) -> None:
        """Rank 0 joins the weight-sync group as its rank 0 (returns when every engine has joined)."""
        from rayalign.engines.weight_sync import join_weight_group

        store = self.weight_store
        self.weight_group = join_weight_group(store.host, store.port, 0, world_size, backend, timeout_s, store)

    def weight_manifest(self, mode: str, dtype: str | None = None) -> dict | None:
        """Rank 0: the `(name, dtype, shape)` list a collective sync sends (and, for an adapter,
        its adapter_config.json), known without gathering any weight."""
        from rayalign.models.export import adapter_config_json, sync_tensors

        if self.rank != 0:
            return None
        module = self.engine.module
        tensors = [(t.name, dtype or str(t.params[0].dtype).removeprefix("torch."), t.shape)
                   for t in sync_tensors(module, mode)]
        return {"tensors": tensors, "adapter_config": adapter_config_json(module) if mode == "adapter" else None}

    def send_weights(self, mode: str, manifest: dict, bucket_bytes: int) -> int | None:
        """Every rank walks the sync tensors (joining each ZeRO-3 gather, one parameter or one
        LoRA module at a time); rank 0 fills buckets and broadcasts them. Returns the buckets sent."""
        from rayalign.engines.weight_sync import BucketSender
        from rayalign.models.export import sync_tensors

        sender = (BucketSender(self.weight_group, manifest["tensors"], bucket_bytes, self.engine.device)
                  if self.rank == 0 else None)
        with torch.no_grad():
            for tensor in sync_tensors(self.engine.module, mode):
                with self.engine.gathered(tensor.params):
                    if sender is not None:
                        sender.add(tensor.compute())
        return sender.finish() if sender is not None else None

    def export(self, folder: str, tokenizer_source: str) -> str | None:
        """Rank 0 writes the trained adapter or full model; all ranks join a ZeRO-3 gather."""
        from rayalign.models.export import save_trained
        from rayalign.models.loading import load_tokenizer

        with self.engine.full_parameters() as module:
            if self.rank == 0:
                return save_trained(module, load_tokenizer(tokenizer_source), folder)
        return None

    def shutdown(self) -> None:
        from rayalign.engines.distributed import close_process_group

        close_process_group()


def trainer_actors(role: str, placement, seed: int, cpus: float, gpus: float, shared_group=None,
                   bundles: list[int] | None = None, threads: int | None = None) -> ActorGroup:
    """`placement.num_workers` Trainer actors, not yet set up (on their own placement group,
    or on `bundles` of a shared one). `threads`: torch CPU threads per rank (default: its CPUs)."""
    world = placement.num_workers
    threads = threads or max(int(cpus), 1)
    return ActorGroup(Trainer, role, world, cpus, gpus, placement.timeout_s,
                      args_for_rank=lambda rank: (rank, world, seed, threads), placement=shared_group, bundles=bundles)


def setup_trainers(group: ActorGroup, spec: TrainerSpec, placement) -> str:
    """Join the ranks into one process group and build the engine on each; returns the
    trainable-parameter counts line. Closes the group if anything fails."""
    try:
        master = group.gather([group.actors[0].rendezvous.remote(placement.timeout_s)], "rendezvous")[0]
        return group.call("setup", spec.model, spec.train, spec.total_steps, spec.objective, spec.options, spec.head,
                          master, placement.backend, placement.timeout_s)[0]
    except BaseException:
        group.close()
        raise
