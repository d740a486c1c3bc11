"""RolloutWorker: a generation engine (vLLM or HF) as a Ray actor, fed new weights after each update
(from the object store, or received from the trainer's weight-sync group).

A tensor-parallel vLLM engine's worker holds no GPU itself: it is told the bundles of its
engine's ranks (`RayRanks`). With `rollout.sleep` the engine sleeps while the trainers
sharing its GPUs update and wakes in parts (weights, then KV cache)."""

from __future__ import annotations

import ray

from rayalign.workers.group import ActorGroup
from rayalign.workers.placement import location


@ray.remote
class RolloutWorker:
    def __init__(self, rank: int, ray_ranks=None):
        self.rank = rank
        self.ray_ranks = ray_ranks   # a RayRanks for a tensor-parallel engine
        self.engine = None

    def where(self) -> dict:
        """Where this actor landed, and the bundles its engine's tensor-parallel workers take."""
        return {**location(), "engine_bundles": self.ray_ranks.bundles if self.ray_ranks else []}

    def setup(self, engine: str, model_folder: str, rollout, seed: int, lora_rank: int | None) -> None:
        from rayalign.engines.generation import make_engine
        from rayalign.models.loading import load_tokenizer

        self.engine = make_engine(engine, model_folder, rollout, seed + self.rank, lora_rank, self.ray_ranks)
        self.tokenizer = load_tokenizer(model_folder)

    def sleep(self) -> None:
        self.engine.sleep()

    def wake(self, parts: tuple[str, ...]) -> None:
        self.engine.wake(parts)

    def generate(self, prompts: list[list[int]], n: int, greedy: bool = False) -> list:
        return self.engine.generate(prompts, n, greedy)

    @ray.method(num_returns=2)
    def generate_part(self, prompts: list[list[int]], n: int):
        """n samples per prompt as (a RolloutPart, which stays in the object store, and its
        summary for the controller: lengths and whether each sample finished)."""
        from rayalign.data.rollout_batch import RolloutPart

        samples = [sample for group in self.engine.generate(prompts, n) for sample in group]
        texts = self.tokenizer.batch_decode([s.response_ids for s in samples], skip_special_tokens=True)
        part = RolloutPart.from_samples(samples, texts)
        return part, part.summary()

    def continue_text(self, prompts: list[list[int]], max_new_tokens: int, top_logprobs: int = 0,
                      stop: list[str] | None = None, temperature: float = 0.0) -> list:
        return self.engine.continue_text(prompts, max_new_tokens, top_logprobs, stop, temperature)

    def load_adapter(self, payload: dict[str, bytes], version: int) -> None:
        self.engine.load_adapter(payload, version)

    def load_weights(self, payload: dict[str, bytes]) -> None:
        self.engine.load_weights(payload)

    def join_weight_group(self, address: str, port: int, first_rank: int, world_size: int, backend: str,
                          timeout_s: float) -> None:
        self.engine.join_weight_group(address, port, first_rank, world_size, backend, timeout_s)

    def receive_weights(self, manifest: dict, mode: str, version: int, bucket_bytes: int) -> None:
        self.engine.receive_weights(manifest, mode, version, bucket_bytes)

    def shutdown(self) -> None:
        if self.engine is not None:
            self.engine.close()


def launch_split(group: ActorGroup, prompts: list[list[int]], method: str, *args) -> list:
    """Start `method` on a group of RolloutWorkers, the prompts split over them in order; the
    references of the parts."""
    size = -(-len(prompts) // len(group))
    chunks = [prompts[i * size:(i + 1) * size] for i in range(len(group))]
    return [getattr(actor, method).remote(chunk, *args) for actor, chunk in zip(group.actors, chunks) if chunk]


def _split(group: ActorGroup, prompts: list[list[int]], method: str, *args) -> list:
    """One result per prompt from `method` of a group of RolloutWorkers, the prompts split over them in order."""
    return [item for part in group.gather(launch_split(group, prompts, method, *args), method) for item in part]


def generate_split(group: ActorGroup, prompts: list[list[int]], n: int, greedy: bool = False) -> list[list]:
    """n samples per prompt from a group of RolloutWorkers."""
    return _split(group, prompts, "generate", n, greedy)


def continue_split(group: ActorGroup, prompts: list[list[int]], max_new_tokens: int, top_logprobs: int = 0,
                   stop: list[str] | None = None, temperature: float = 0.0) -> list:
    """A `Continuation` per prompt (greedy unless a temperature is given) from a group of RolloutWorkers."""
    return _split(group, prompts, "continue_text", max_new_tokens, top_logprobs, stop, temperature)
