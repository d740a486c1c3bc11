"""RolloutWorker: a generation engine (vLLM or HF) as a Ray actor, fed new weights after each update."""

from __future__ import annotations

import ray

from rayalign.workers.group import ActorGroup
from rayalign.workers.placement import location


@ray.remote
class RolloutWorker:
    def __init__(self, rank: int):
        self.rank = rank
        self.engine = None

    def where(self) -> dict:
        return location()

    def setup(self, engine: str, model_folder: str, rollout, seed: int, lora_rank: int | None) -> None:
        from rayalign.engines.generation import make_engine

        self.engine = make_engine(engine, model_folder, rollout, seed + self.rank, lora_rank)

    def generate(self, prompts: list[list[int]], n: int, greedy: bool = False) -> list:
        return self.engine.generate(prompts, n, greedy)

    def load_adapter(self, payload: dict[str, bytes], version: int) -> None:
        self.engine.load_adapter(payload, version)

    def load_weights(self, payload: dict[str, bytes]) -> None:
        self.engine.load_weights(payload)

    def shutdown(self) -> None:
        if self.engine is not None:
            self.engine.close()


def generate_split(group: ActorGroup, prompts: list[list[int]], n: int, greedy: bool = False) -> list[list]:
    """n samples per prompt from a group of RolloutWorkers, the prompts split over them in order."""
    size = -(-len(prompts) // len(group))
    chunks = [prompts[i * size:(i + 1) * size] for i in range(len(group))]
    busy = [(actor, chunk) for actor, chunk in zip(group.actors, chunks) if chunk]
    results = group.gather([actor.generate.remote(chunk, n, greedy) for actor, chunk in busy], "generate")
    return [samples for part in results for samples in part]
