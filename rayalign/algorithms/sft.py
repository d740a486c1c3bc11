"""Supervised fine-tuning loss: next-token cross-entropy over the target tokens only."""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def shifted_token_losses(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token losses and a mask, predicting labels[t+1] from logits[t].

    logits: (batch, seq, vocab); labels: (batch, seq) with IGNORE_INDEX where there is no
    target (prompt, padding). Returns (losses, mask), both (batch, seq - 1).
    """
    logits = logits[:, :-1].float()
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    losses = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)), targets.clamp(min=0).reshape(-1), reduction="none"
    ).view_as(targets)
    return losses * mask, mask


def sft_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean loss over target tokens, number of target tokens)."""
    losses, mask = shifted_token_losses(logits, labels)
    count = mask.sum()
    return losses.sum() / count.clamp(min=1), count
