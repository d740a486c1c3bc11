"""The batches of rollouts an RL run has set generating: the queue behind `rlhf.max_staleness`.

With k = 0 each step's batch starts when the step needs it, after the previous step's weight
sync: the on-policy loop. With k > 0 the batches of the next k steps are already generating
on the rollout workers (on devices of their own) while the trainers update, so generation
and training overlap. Every batch remembers the policy version that sampled it (the number of
updates behind the engine's weights when it started), so a step knows how stale its data is.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable

import ray

from rayalign.data.prompts import PromptExample
from rayalign.workers.group import WorkerError


@dataclass
class Batch:
    step: int                     # the step that trains on it
    version: int                  # the policy version (updates done) that sampled it
    prompts: list[PromptExample]
    launched: list                # per rollout worker, the references of its part and summary


@dataclass
class Rollouts:
    prompts: list[PromptExample]
    generated: object             # rl_roles.Generated: the parts' references and per-sample summary
    staleness: int                # updates between the sampling policy and the one trained


class RolloutQueue:
    def __init__(self, roles, prompts_for: Callable[[int], list[PromptExample]], samples: int, ahead: int):
        self.roles, self.prompts_for, self.samples, self.ahead = roles, prompts_for, samples, ahead
        self.pending: deque[Batch] = deque()
        self.next_step: int | None = None

    def fill(self, step: int) -> None:
        """At the start of `step`, when the engines hold the weights of `step` updates: have the
        batches of steps `step` .. `step + ahead` generating."""
        if self.next_step is None:
            self.next_step = step
        while self.next_step <= step + self.ahead:
            prompts = self.prompts_for(self.next_step)
            launched = self.roles.launch_generation([p.prompt_ids for p in prompts], self.samples)
            self.pending.append(Batch(self.next_step, step, prompts, launched))
            self.next_step += 1

    def take(self, step: int) -> Rollouts:
        """This step's batch, waiting for it if it is still generating."""
        batch = self.pending.popleft()
        if batch.step != step:
            raise RuntimeError(f"rollout queue out of order: step {step} got the batch of step {batch.step}")
        return Rollouts(batch.prompts, self.roles.collect_generation(batch.launched), step - batch.version)

    def settle(self) -> None:
        """Let the batches generating ahead finish on the weights they started with, before a
        weight sync changes them (a failure among them surfaces when its step takes it)."""
        refs = [ref for batch in self.pending for pair in batch.launched for ref in pair]
        if not refs:
            return
        timeout = self.roles.config.placement.timeout_s
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout)
        if len(ready) < len(refs):
            raise WorkerError(f"RolloutWorker: generation ahead of the update gave no answer within {timeout:.0f} s")
