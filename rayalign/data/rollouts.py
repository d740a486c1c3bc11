"""Rollouts as data: sampled responses, their per-token fields, and the padded batch layout.

The batch layout (what `collate_rollouts` builds and workers/rl_objectives.py reads):

    input_ids      [B, P+R]  prompt left-padded to P columns, response right-padded to R
    attention_mask [B, P+R]  1 on real tokens
    position_ids   [B, P+R]  0 at each row's first real token (as the rollout engine counts)
    response_mask  [B, R]    1 on response tokens
    <field>        [B, R]    per-token values (old_logprobs, advantages, returns, ...), 0 on padding
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


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


@dataclass
class Rollout:
    sample: Sample
    fields: dict[str, list[float]] = field(default_factory=dict)  # per response token


def collate_rollouts(rollouts: list[Rollout], pad_id: int, normaliser: float | None = None) -> dict:
    """One micro-batch in the layout above; `normaliser` (the token count a loss divides by)
    defaults to the batch's own response tokens."""
    prompt_width = max(len(r.sample.prompt_ids) for r in rollouts)
    width = max(max(len(r.sample.response_ids) for r in rollouts), 1)
    ids, attention, response = [], [], []
    for r in rollouts:
        prompt, answer = r.sample.prompt_ids, r.sample.response_ids
        left, right = prompt_width - len(prompt), width - len(answer)
        ids.append([pad_id] * left + list(prompt) + list(answer) + [pad_id] * right)
        attention.append([0] * left + [1] * (len(prompt) + len(answer)) + [0] * right)
        response.append([1.0] * len(answer) + [0.0] * right)
    attention_mask = torch.tensor(attention)
    batch = {
        "input_ids": torch.tensor(ids),
        "attention_mask": attention_mask,
        "position_ids": (attention_mask.cumsum(-1) - 1).clamp(min=0),
        "response_mask": torch.tensor(response),
    }
    for name in rollouts[0].fields:
        batch[name] = pad_rows([r.fields[name] for r in rollouts], width)
    batch["normaliser"] = float(normaliser if normaliser is not None else batch["response_mask"].sum().clamp(min=1))
    return batch


def pad_rows(rows: list[list[float]], width: int) -> torch.Tensor:
    """Per-token rows, right-padded with 0 to `width` columns: [len(rows), width]."""
    return torch.tensor([list(row) + [0.0] * (width - len(row)) for row in rows])


def sequence_tokens(rollout: Rollout) -> int:
    return len(rollout.sample.prompt_ids) + len(rollout.sample.response_ids)
