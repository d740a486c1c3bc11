"""What generation engines give back: sampled responses with the engine's log-probs, and greedy
continuations with their top log-probs. (An RL step's rollouts as tensors, and the batch
layout the losses read: data/rollout_batch.py.)"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Sample:
    prompt_ids: list[int]
    response_ids: list[int]
    logprobs: list[float] = field(default_factory=list)  # the rollout engine's, per response token
    finished: bool = True                                 # False: cut at max_new_tokens


@dataclass
class Continuation:
    """A greedy reply as text, with each generated token's text and the top log-probabilities
    at its position ({token text: logprob}), when they were asked for."""

    text: str
    tokens: list[str] = field(default_factory=list)
    top_logprobs: list[dict[str, float]] = field(default_factory=list)
