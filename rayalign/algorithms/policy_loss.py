"""Token log-probabilities and the on-policy RL losses: PPO's clipped policy and value losses,
and KL to the reference as a loss term.

Per-token tensors are (B, T) with `mask` true on response tokens. Every loss is a sum over
the masked tokens divided by `normaliser` when given (the token count of the whole
mini-batch, so that micro-batches under gradient accumulation add up to its token mean),
else the masked mean. Stats are detached 0-dim tensors.
"""

from __future__ import annotations

import torch

from rayalign.algorithms.advantages import masked_mean, masked_var
from rayalign.algorithms.kl import kl_estimate


def selective_logprobs(logits: torch.Tensor, tokens: torch.Tensor, chunk_rows: int = 4) -> torch.Tensor:
    """log_softmax(logits).gather(tokens) in float32, as logit - logsumexp, `chunk_rows`
    sequences at a time: the float32 temporaries never exceed chunk_rows * T * V."""
    pieces = []
    for start in range(0, logits.size(0), chunk_rows):
        chunk = logits[start:start + chunk_rows].float()
        picked = chunk.gather(-1, tokens[start:start + chunk_rows].unsqueeze(-1)).squeeze(-1)
        pieces.append(picked - torch.logsumexp(chunk, dim=-1))
    return torch.cat(pieces)


def entropy_from_logits(logits: torch.Tensor, chunk_rows: int = 4) -> torch.Tensor:
    """Entropy of each position's next-token distribution, logsumexp(z) - sum softmax(z) * z."""
    pieces = []
    for start in range(0, logits.size(0), chunk_rows):
        chunk = logits[start:start + chunk_rows].float()
        pieces.append(torch.logsumexp(chunk, dim=-1) - (torch.softmax(chunk, dim=-1) * chunk).sum(-1))
    return torch.cat(pieces)


def _reduce(per_token: torch.Tensor, mask: torch.Tensor, normaliser: float | None) -> torch.Tensor:
    if normaliser is None:
        return masked_mean(per_token, mask)
    return torch.where(mask.bool(), per_token, 0.0).sum() / normaliser


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                clip_low: float = 0.2, clip_high: float | None = None, normaliser: float | None = None,
                weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate, -min(ratio * A, clip(ratio, 1 - clip_low, 1 + clip_high) * A).

    `clip_high` defaults to `clip_low`; a larger one is DAPO's "clip-higher". Gradients flow
    through `logp` only. `weights` (per token, e.g. `truncated_importance_weights`) scale each
    token's term. Stats: share of tokens where the clip is active, approx_kl (k3 estimate of
    KL(old || new) from the old policy's samples) and the mean ratio.
    """
    clip_high = clip_low if clip_high is None else clip_high
    ratio = torch.exp(logp - old_logp.detach())
    advantages = advantages.detach()
    unclipped = -ratio * advantages
    clipped = -ratio.clamp(1 - clip_low, 1 + clip_high) * advantages
    per_token = torch.max(unclipped, clipped)
    loss = _reduce(per_token if weights is None else weights.detach() * per_token, mask, normaliser)
    with torch.no_grad():
        stats = {
            "clip_fraction": masked_mean((clipped > unclipped).float(), mask),
            "approx_kl": masked_mean(kl_estimate(old_logp, logp, "k3"), mask),
            "ratio_mean": masked_mean(ratio, mask),
        }
    return loss, stats


def truncated_importance_weights(proximal_logp: torch.Tensor, behaviour_logp: torch.Tensor, mask: torch.Tensor,
                                 cap: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """min(pi_proximal / pi_behaviour, cap) per token: the correction for samples drawn by an
    older policy (or another engine's numerics) than the one the update starts from
    (truncated importance sampling; the cap bounds the variance a rare token can add).
    Stats: the mean and largest weight and the share of tokens the cap truncated."""
    raw = torch.exp(proximal_logp.detach() - behaviour_logp)
    weights = raw.clamp(max=cap)
    with torch.no_grad():
        stats = {
            "is_weight_mean": masked_mean(weights, mask),
            "is_weight_max": torch.where(mask.bool(), weights, 0.0).max(),
            "is_truncated_fraction": masked_mean((raw > cap).float(), mask),
        }
    return weights, stats


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip: float = 0.2, normaliser: float | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """0.5 * max((v - R)^2, (clip(v, old - clip, old + clip) - R)^2); clip=0: unclipped.

    Stats: share of tokens where the clipped error is the larger one, and the explained
    variance 1 - Var(R - v) / Var(R) over the masked tokens (1 is perfect, <= 0 useless).
    """
    errors = (values - returns) ** 2
    if clip:
        clipped_values = old_values + (values - old_values).clamp(-clip, clip)
        clipped_errors = (clipped_values - returns) ** 2
    else:
        clipped_errors = errors
    loss = _reduce(0.5 * torch.max(errors, clipped_errors), mask, normaliser)
    with torch.no_grad():
        stats = {
            "value_clip_fraction": masked_mean((clipped_errors > errors).float(), mask),
            "explained_variance": 1 - masked_var(returns - values, mask) / masked_var(returns, mask).clamp(min=1e-8),
        }
    return loss, stats


def kl_loss(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor, kind: str = "k3",
            normaliser: float | None = None) -> torch.Tensor:
    """KL(pi || ref) as a loss term, one of kl.KL_ESTIMATORS reduced over the response tokens."""
    return _reduce(kl_estimate(logp, ref_logp.detach(), kind), mask, normaliser)
