"""RewardWorker: the run's reward sources (rules, functions, reward models, HTTP scorers) as a Ray actor."""

from __future__ import annotations

import ray

from rayalign.workers.group import ActorGroup
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

    def score_parts(self, prompts: list, metadata: list[dict], samples: int, *parts) -> tuple[list[float], dict]:
        """The same for a step's rollout parts (`samples` per prompt), read from the object store."""
        return self.score([p for p in prompts for _ in range(samples)], [text for part in parts for text in part.texts],
                          [m for m in metadata for _ in range(samples)])


def score_on(group: ActorGroup, prompts: list, completions: list[str], metadata: list[dict]) -> tuple[list, dict]:
    """The weighted totals and each source's scores, from the group's reward worker."""
    return group.gather([group.actors[0].score.remote(prompts, completions, metadata)], "score")[0]
