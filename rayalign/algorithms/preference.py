"""Preference-learning losses: Bradley-Terry reward modelling and DPO with its variants.

All inputs are per-pair tensors of shape (batch,). Pure functions: no models, no I/O.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rayalign.algorithms.sft import shifted_token_losses


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor, margin: torch.Tensor | None = None,
                       center_coef: float = 0.0, target: torch.Tensor | None = None) -> torch.Tensor:
    """-log sigmoid(d), d = r_chosen - r_rejected - margin, averaged over pairs.

    `margin` (Llama 2's) asks the chosen reward to beat the rejected one by at least that
    much; `target` (soft labels, e.g. an AI labeler's probability that chosen is better)
    makes it the cross-entropy to that probability, -(t log sigmoid(d) + (1 - t) log sigmoid(-d)),
    which is the plain loss at t = 1 and is smallest at d = logit(t); `center_coef` adds
    coef * mean((r_chosen + r_rejected)^2), which keeps rewards centred on zero.
    """
    difference = chosen - rejected
    if margin is not None:
        difference = difference - margin
    if target is None:
        loss = -F.logsigmoid(difference).mean()
    else:
        loss = -(target * F.logsigmoid(difference) + (1 - target) * F.logsigmoid(-difference)).mean()
    if center_coef:
        loss = loss + center_coef * ((chosen + rejected) ** 2).mean()
    return loss


def sequence_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of target-token log-probabilities per sequence, target-token count per sequence)."""
    token_losses, mask = shifted_token_losses(logits, labels)
    return -token_losses.sum(-1), mask.sum(-1)


DPO_LOSSES = ("sigmoid", "ipo")


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
             reference_chosen: torch.Tensor, reference_rejected: torch.Tensor,
             beta: float = 0.1, loss_type: str = "sigmoid", label_smoothing: float = 0.0,
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DPO (Rafailov et al.), conservative DPO (label_smoothing > 0) and IPO (Azar et al.).

    Inputs are sequence log-probabilities (IPO expects them averaged per token). Returns
    (loss, chosen implicit reward, rejected implicit reward), rewards = beta * log-ratio.
    """
    chosen_ratio = policy_chosen - reference_chosen
    rejected_ratio = policy_rejected - reference_rejected
    logits = chosen_ratio - rejected_ratio
    if loss_type == "sigmoid":
        losses = -(1 - label_smoothing) * F.logsigmoid(beta * logits) - label_smoothing * F.logsigmoid(-beta * logits)
    elif loss_type == "ipo":
        losses = (logits - 1 / (2 * beta)) ** 2
    else:
        raise ValueError(f"unknown DPO loss {loss_type!r}; choose from {DPO_LOSSES}")
    return losses.mean(), beta * chosen_ratio.detach(), beta * rejected_ratio.detach()


def pairwise_accuracy(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Share of pairs ranked right; a tie counts half (an untrained model scores 0.5)."""
    return ((chosen > rejected).float() + 0.5 * (chosen == rejected).float()).mean()
