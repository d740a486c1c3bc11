"""The reward deployment: trained reward models from run folders, scoring (prompt, completion)
pairs with RewardModelScorer (normalised by the model's reward_stats.json).

Reward models are multiplexed by run name like adapters: loaded on first use, a few per
replica, least recently used unloaded first.
"""

from __future__ import annotations

import asyncio

from ray import serve

from rayalign.rewards.reward_model import RewardModelScorer
from rayalign.serving.discovery import find_run


MODELS_PER_REPLICA = 2


class RewardScorers:
    def __init__(self, runs_dir: str, batch_size: int = 8):
        self.runs_dir, self.batch_size = runs_dir, batch_size

    @serve.multiplexed(max_num_models_per_replica=MODELS_PER_REPLICA)
    async def scorer(self, run: str) -> RewardModelScorer:
        path = find_run(self.runs_dir, run, "reward").path
        return await asyncio.to_thread(RewardModelScorer, path, batch_size=self.batch_size)

    async def score(self, prompts: list, completions: list[str], metadata: list[dict] | None) -> list[float]:
        scorer = await self.scorer(serve.get_multiplexed_model_id())
        return await asyncio.to_thread(scorer, prompts, completions, metadata)
