"""RewardWorker: the run's reward sources (rules, functions, reward models, HTTP scorers) as a Ray actor."""

from __future__ import annotations

import ray

from rayalign.workers.placement import location


@ray.remote
class RewardWorker:
    def __init__(self, sources: list):
        from rayalign.rewards.mix import build_rewards

        self.mix = build_rewards(sources)

    def where(self) -> dict:
        return location()

    def score(self, prompts: list, completions: list[str], metadata: list[dict]) -> tuple[list[float], dict]:
        """(weighted total per sample, {source label: its scores})."""
        return self.mix.score(prompts, completions, metadata)
