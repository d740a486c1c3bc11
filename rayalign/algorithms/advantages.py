"""Advantage estimators for on-policy RL (PPO, GRPO, RLOO, REINFORCE++), picked by name.

Shapes: `scores` (N,) holds one reward per sampled response; `mask` (N, T) is true on the
response tokens (bool or 0/1 float); per-token tensors are (N, T) and zero on padding.
Samples of one prompt sit next to each other: group g is rows [g*size, (g+1)*size).
Standard deviations and variances are unbiased (Bessel-corrected), as torch.std and TRL's
GRPO use them.
"""

from __future__ import annotations

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of x where mask is true (0 where nothing is); values on padding never leak in."""
    mask = mask.bool()
    return torch.where(mask, x, 0.0).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unbiased variance of x over the masked elements."""
    count = mask.bool().sum()
    squares = masked_mean((x - masked_mean(x, mask)) ** 2, mask)
    return squares * count / (count - 1).clamp(min=1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over the masked elements; the mean is added back if not `shift_mean`."""
    mean = masked_mean(x, mask)
    whitened = (x - mean) * torch.rsqrt(masked_var(x, mask) + eps)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(mask.bool(), whitened, 0.0)


def token_rewards(scores: torch.Tensor, mask: torch.Tensor, kl: torch.Tensor | None = None,
                  kl_coef: float = 0.0) -> torch.Tensor:
    """Each score on its row's last response token, minus kl_coef * kl on every response token.

    This is the KL penalty in the reward (InstructGPT, OpenRLHF). A row with no response
    token gets nothing.
    """
    mask = mask.bool()
    is_last = mask & (mask.cumsum(-1) == mask.sum(-1, keepdim=True))
    rewards = torch.where(is_last, scores.unsqueeze(-1), 0.0)
    if kl is not None and kl_coef:
        rewards = rewards - kl_coef * torch.where(mask, kl, 0.0)
    return rewards


def _groups(scores: torch.Tensor, group_size: int) -> torch.Tensor:
    """scores (N,) as (N / group_size, group_size); a group needs two samples to compare."""
    if group_size < 2 or scores.numel() % group_size:
        raise ValueError(f"{scores.numel()} scores do not split into groups of {group_size} (at least 2)")
    return scores.view(-1, group_size)


def group_advantages(scores: torch.Tensor, group_size: int, scale: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """GRPO: (r - group mean) / (group std + eps), or r - group mean if not `scale`.

    A group whose rewards are all equal gets exactly zero: a float mean of equal values can
    be off by one ulp, and dividing that by eps would invent a signal.
    """
    grouped = _groups(scores, group_size)
    centred = grouped - grouped.mean(-1, keepdim=True)
    centred = centred.masked_fill((grouped == grouped[:, :1]).all(-1, keepdim=True), 0.0)
    if scale:
        centred = centred / (grouped.std(-1, keepdim=True) + eps)
    return centred.reshape(-1)


def rloo_advantages(scores: torch.Tensor, group_size: int) -> torch.Tensor:
    """RLOO: r_i minus the mean of the other group_size - 1 rewards of its group."""
    grouped = _groups(scores, group_size)
    others = (grouped.sum(-1, keepdim=True) - grouped) / (group_size - 1)
    return (grouped - others).reshape(-1)


def discounted_returns(token_rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """G_t = r_t + gamma * G_{t+1}, summed backwards over the masked positions only."""
    mask = mask.bool()
    returns = torch.zeros_like(token_rewards)
    following = torch.zeros_like(token_rewards[:, 0])
    for t in reversed(range(token_rewards.size(1))):
        following = torch.where(mask[:, t], token_rewards[:, t] + gamma * following, 0.0)
        returns[:, t] = following
    return returns


def reinforce_pp_advantages(token_rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """REINFORCE++: discounted returns whitened over every response token of the batch."""
    return masked_whiten(discounted_returns(token_rewards, mask, gamma), mask)


def gae(token_rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) -> (advantages, returns).

    The episode ends at the last response token (V = 0 after it, also for a response cut
    at the length limit). Advantages are the (gamma * lam)-discounted sums of the TD errors
    delta_t = r_t + gamma * V_{t+1} - V_t; returns = advantages + values.
    """
    mask = mask.bool()
    next_values = torch.cat([torch.where(mask[:, 1:], values[:, 1:], 0.0), torch.zeros_like(values[:, :1])], dim=1)
    deltas = token_rewards + gamma * next_values - values
    advantages = discounted_returns(deltas, mask, gamma * lam)
    return advantages, torch.where(mask, advantages + values, 0.0)


# ---------------------------------------------------------------- one entry point
#
# GRPO and RLOO score whole sequences: their advantage is the same on every response
# token. With kl_coef > 0 and a `kl`, they also take the KL penalty in the reward, the
# way OpenRLHF does: advantage_t = seq_adv - kl_coef * sum_{t' >= t} kl_t' (undiscounted;
# gamma and lam are PPO's and REINFORCE++'s). For KL as a loss term, pass no `kl` here
# and use policy_loss.kl_loss.


def _sequence(advantages: torch.Tensor, mask: torch.Tensor, kl: torch.Tensor | None, kl_coef: float) -> torch.Tensor:
    return discounted_returns(token_rewards(advantages, mask, kl, kl_coef), mask, 1.0)


def _grpo(scores, mask, kl, kl_coef, *, group_size, scale_rewards, **_):
    return _sequence(group_advantages(scores, group_size, scale_rewards), mask, kl, kl_coef), None


def _rloo(scores, mask, kl, kl_coef, *, group_size, **_):
    return _sequence(rloo_advantages(scores, group_size), mask, kl, kl_coef), None


def _reinforce_pp(scores, mask, kl, kl_coef, *, gamma, **_):
    return reinforce_pp_advantages(token_rewards(scores, mask, kl, kl_coef), mask, gamma), None


def _ppo(scores, mask, kl, kl_coef, *, values, gamma, lam, **_):
    if values is None:
        raise ValueError("ppo needs the critic's values for GAE")
    advantages, returns = gae(token_rewards(scores, mask, kl, kl_coef), values, mask, gamma, lam)
    return masked_whiten(advantages, mask), returns


ADVANTAGE_ESTIMATORS = {"grpo": _grpo, "rloo": _rloo, "reinforce_pp": _reinforce_pp, "ppo": _ppo}


def compute_advantages(algorithm: str, *, scores: torch.Tensor, mask: torch.Tensor, group_size: int,
                       values: torch.Tensor | None = None, kl: torch.Tensor | None = None, kl_coef: float = 0.0,
                       gamma: float = 1.0, lam: float = 0.95, scale_rewards: bool = True, whiten: bool = False,
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(advantages (N, T), returns (N, T) for PPO's critic, None for the others).

    `whiten` whitens the scores across the batch first; `scale_rewards` is GRPO's division
    by the group std; PPO's advantages are always whitened over the response tokens.
    """
    if algorithm not in ADVANTAGE_ESTIMATORS:
        raise ValueError(f"unknown RL algorithm {algorithm!r}; choose from {tuple(ADVANTAGE_ESTIMATORS)}")
    if whiten:
        scores = masked_whiten(scores, torch.ones_like(scores, dtype=torch.bool))
    return ADVANTAGE_ESTIMATORS[algorithm](scores, mask, kl, kl_coef, group_size=group_size, values=values,
                                           gamma=gamma, lam=lam, scale_rewards=scale_rewards)
