"""The chat models the pipelines ask (the RLAIF labeler, the synthetic-data teacher): an
OpenAI-compatible endpoint, or a model on rollout workers of the run's Ray cluster."""

from __future__ import annotations

from rayalign.config import RunConfig
from rayalign.models.chain import start_model
from rayalign.models.loading import load_tokenizer
from rayalign.pipelines.evaluate import EvalWorkers
from rayalign.rewards.feedback import make_feedback
from rayalign.workers.cluster import connect


def start_workers(config: RunConfig, folder: str, rewards: list) -> EvalWorkers:
    """Rollout workers on `folder` (and a reward worker for `rewards`), on the run's Ray cluster."""
    connect(config.placement.address)
    return EvalWorkers(folder, config.rollout, rewards, config.seed, config.placement.timeout_s)


def open_chat_model(section, config: RunConfig, workers: EvalWorkers | None = None, rewards: list = ()):
    """The chat model a section (`labeler:`, `teacher:`) names, and the workers it runs on:
    none for an endpoint (`workers` is passed back as it is); else `workers` switched to its
    weights when they can be (same architecture, rollout settings and reward sources: a weight
    reload, not a new engine), or new workers on it with a reward worker for `rewards`."""
    if section.url:
        return make_feedback(section), workers
    folder = start_model(section.model)
    rewards = list(rewards)
    if workers is not None and workers.serves(folder, config.rollout, rewards):
        workers.use_model(folder)
    else:
        if workers is not None:
            workers.close()
        workers = start_workers(config, folder, rewards)
    return make_feedback(section, workers.rollout, load_tokenizer(folder)), workers
