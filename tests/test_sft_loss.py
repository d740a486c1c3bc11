"""The SFT loss against a hand-computed case."""

import math

import torch

from rayalign.algorithms.sft import IGNORE_INDEX, sft_loss, shifted_token_losses


def test_masked_next_token_loss_matches_hand_computation():
    # Position 0 predicts label[1] = 0 from logits [0, 0]: -log(1/2).
    # Position 1 predicts label[2] = 1 from logits [ln 3, 0]: -log(1/4).
    # Position 2 predicts nothing (shifted out); label[0] is a prompt token (ignored).
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0], [5.0, -5.0]]])
    labels = torch.tensor([[IGNORE_INDEX, 0, 1]])
    loss, count = sft_loss(logits, labels)
    assert count.item() == 2
    assert abs(loss.item() - (math.log(2) + math.log(4)) / 2) < 1e-6


def test_prompt_and_padding_tokens_carry_no_loss():
    logits = torch.randn(2, 4, 7)
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 3, 4], [IGNORE_INDEX, 2, IGNORE_INDEX, IGNORE_INDEX]])
    losses, mask = shifted_token_losses(logits, labels)
    assert mask.tolist() == [[False, True, True], [True, False, False]]
    assert (losses[~mask] == 0).all()
    # Changing logits whose next label is ignored leaves the loss unchanged.
    changed = logits.clone()
    changed[0, 0] += 10.0
    changed[1, 2:] -= 10.0
    assert torch.allclose(sft_loss(changed, labels)[0], sft_loss(logits, labels)[0])


def test_all_ignored_gives_zero_not_nan():
    loss, count = sft_loss(torch.randn(1, 3, 5), torch.full((1, 3), IGNORE_INDEX))
    assert count.item() == 0 and loss.item() == 0.0
