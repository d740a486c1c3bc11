"""PolicyTrainer: one data-parallel rank of a DeepSpeed training engine, as a Ray actor."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import ray
import torch


@ray.remote
class PolicyTrainer:
    def __init__(self, rank: int, world_size: int, seed: int, threads: int):
        self.rank, self.world_size = rank, world_size
        torch.set_num_threads(max(threads, 1))
        torch.manual_seed(seed + rank)
        self.engine = None

    def rendezvous(self) -> tuple[str, int]:
        """This node's address and a free port, for rank 0 to host the process group."""
        with socket.socket() as probe:
            probe.bind(("", 0))
            port = probe.getsockname()[1]
        return ray.util.get_node_ip_address(), port

    def setup(self, model_config, train_config, total_steps: int, objective: str,
              master: tuple[str, int], backend: str, timeout_s: float) -> str:
        from rayalign.engines.distributed import init_process_group
        from rayalign.engines.training import TrainingEngine
        from rayalign.models.adapt import build_trainable
        from rayalign.workers.objectives import OBJECTIVES

        init_process_group(self.rank, self.world_size, master[0], master[1], backend, timeout_s=timeout_s)
        model, counts = build_trainable(model_config)
        self.engine = TrainingEngine(model, train_config, total_steps, self.world_size, model_config.dtype)
        self.objective = OBJECTIVES[objective]
        return counts

    def train_step(self, micro_batches: list[dict]) -> dict:
        return self.engine.train_step(micro_batches, self.objective)

    def evaluate(self, batches: list[dict]) -> list[dict]:
        return self.engine.evaluate(batches, self.objective)

    def save_checkpoint(self, folder: str) -> None:
        self.engine.save_checkpoint(folder)
        torch.save(torch.get_rng_state(), Path(folder) / f"rng-rank{self.rank}.pt")

    def load_checkpoint(self, folder: str) -> None:
        self.engine.load_checkpoint(folder)
        rng = Path(folder) / f"rng-rank{self.rank}.pt"
        if rng.is_file():
            torch.set_rng_state(torch.load(rng))

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

    def pid(self) -> int:
        return os.getpid()
