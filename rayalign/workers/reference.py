"""ReferenceWorker: the frozen starting policy, for the KL term of full-weight RL runs.

(A LoRA policy needs none: its trainer computes the reference with the adapter off.)"""

from __future__ import annotations

import ray
import torch

from rayalign.workers.placement import location


@ray.remote
class ReferenceWorker:
    def __init__(self, model: str, dtype: str, threads: int):
        torch.set_num_threads(max(threads, 1))
        self.model_name, self.dtype = model, dtype
        self.model = None

    def where(self) -> dict:
        return location()

    def setup(self) -> None:
        from rayalign.models.loading import load_causal_lm

        self.model = load_causal_lm(self.model_name, dtype=self.dtype).eval()
        self.model.requires_grad_(False)

    def forward_rows(self, objective: str, key: str, batches: list[list[int]], keep: int, layout, *blocks):
        from rayalign.workers.step_rows import forward_rows

        return forward_rows(self.evaluate, objective, key, batches, keep, layout, blocks)

    @torch.no_grad()
    def evaluate(self, batches: list[dict], objective: str = "logprobs") -> list[dict]:
        from rayalign.engines.training import plain_stats
        from rayalign.workers.objectives import make_objective

        forward = make_objective(objective, {})
        return [plain_stats(forward(self.model, batch)[1]) for batch in batches]
