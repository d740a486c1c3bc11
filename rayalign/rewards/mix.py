"""An RL run's reward: the weighted sum of its sources, each source's scores kept for logging."""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Callable

from rayalign.config import RewardSourceConfig
from rayalign.rewards.function import FunctionReward
from rayalign.rewards.graders import GraderScorer
from rayalign.rewards.remote import HttpReward, JudgeReward
from rayalign.rewards.values import RewardError

RewardSource = Callable[[list, list, list], list]  # (prompts, completions, metadata) -> floats


class RewardMix:
    """(label, weight, source) triples; labels are unique so each source logs under its own."""

    def __init__(self, sources: list[tuple[str, float, RewardSource]]):
        self.check_labels([label for label, _, _ in sources])
        self.sources = list(sources)

    @staticmethod
    def check_labels(labels: list[str]) -> None:
        repeated = sorted(label for label, count in Counter(labels).items() if count > 1)
        if repeated:
            raise RewardError(f"reward sources share the labels {repeated}; give each a distinct `name`")

    @property
    def labels(self) -> list[str]:
        return [label for label, _, _ in self.sources]

    def score(self, prompts: list, completions: list, metadata: list[dict] | None = None,
              ) -> tuple[list[float], dict[str, list[float]]]:
        """(weighted total per completion, {label: that source's unweighted scores})."""
        metadata = metadata if metadata is not None else [{} for _ in prompts]
        if not len(prompts) == len(completions) == len(metadata):
            raise RewardError(f"{len(prompts)} prompts, {len(completions)} completions and "
                              f"{len(metadata)} metadata rows: they must pair up one to one")
        per_source = {label: list(source(prompts, completions, metadata)) for label, _, source in self.sources}
        total = [sum(weight * per_source[label][i] for label, weight, _ in self.sources)
                 for i in range(len(prompts))]
        return total, per_source


def _with_options(config: RewardSourceConfig, cls, *args, **kwargs):
    """`cls(*args, **kwargs, **config.options)`; options that do not fit its signature are a named error."""
    try:
        inspect.signature(cls).bind(*args, **kwargs, **config.options)
    except TypeError as exc:
        raise RewardError(f"reward source {config.label!r}: options {sorted(config.options)} do not fit "
                          f"{cls.__name__}{inspect.signature(cls)}: {exc}") from None
    return cls(*args, **kwargs, **config.options)


def build_source(config: RewardSourceConfig) -> RewardSource:
    """The callable for one `rewards:` entry of a recipe (models load only when needed)."""
    if config.type == "model":
        from rayalign.rewards.reward_model import RewardModelScorer

        return _with_options(config, RewardModelScorer, config.path)
    if config.type == "critic":
        from rayalign.rewards.critic import CriticReward

        return _with_options(config, CriticReward, path=config.path, url=config.url, api_key_env=config.api_key_env,
                             timeout_s=config.timeout_s, name=config.label)
    if config.type == "grader":
        return GraderScorer(config.grader, config.url, config.api_key_env, config.timeout_s, config.label)
    if config.type == "function":
        return FunctionReward(config.path, config.options)
    remote = HttpReward if config.type == "http" else JudgeReward
    return remote(config.url, config.api_key_env, config.timeout_s, config.label, config.options)


def build_rewards(configs: list[RewardSourceConfig]) -> RewardMix:
    if not configs:
        raise RewardError("an RL run needs at least one reward source under `rewards:`")
    RewardMix.check_labels([config.label for config in configs])  # before loading any model
    return RewardMix([(config.label, config.weight, build_source(config)) for config in configs])
