"""Bradley-Terry (hard and soft labels), DPO, conservative DPO and IPO against hand-computed values."""

import math

import pytest
import torch

from rayalign.algorithms.preference import (bradley_terry_loss, dpo_loss, pairwise_accuracy,
                                            sequence_logprobs)
from rayalign.algorithms.sft import IGNORE_INDEX


def nll_sigmoid(x: float) -> float:
    return math.log(1 + math.exp(-x))


def t(*values):
    return torch.tensor(values, dtype=torch.float32)


def test_bradley_terry():
    assert bradley_terry_loss(t(2.0), t(0.0)).item() == pytest.approx(nll_sigmoid(2.0))  # 0.126928
    assert bradley_terry_loss(t(2.0), t(0.0), margin=t(1.0)).item() == pytest.approx(nll_sigmoid(1.0))
    centred = bradley_terry_loss(t(2.0), t(0.0), center_coef=0.1).item()
    assert centred == pytest.approx(nll_sigmoid(2.0) + 0.1 * 4.0)
    # averaged over pairs
    assert bradley_terry_loss(t(2.0, 0.0), t(0.0, 0.0)).item() == pytest.approx((nll_sigmoid(2.0) + math.log(2)) / 2)


def test_bradley_terry_with_soft_targets():
    # d = 2, target 0.8: 0.8 * log(1 + e^-2) + 0.2 * log(1 + e^2) = 0.8 * 0.126928 + 0.2 * 2.126928 = 0.526928
    assert bradley_terry_loss(t(2.0), t(0.0), target=t(0.8)).item() == pytest.approx(0.526928, abs=1e-6)
    # the margin shifts d before the soft cross-entropy: d = 3 - 0 - 1 = 2, the same value
    assert bradley_terry_loss(t(3.0), t(0.0), margin=t(1.0), target=t(0.8)).item() == pytest.approx(0.526928, abs=1e-6)
    # a tie at d = 0 costs log 2
    assert bradley_terry_loss(t(0.0), t(0.0), target=t(0.5)).item() == pytest.approx(math.log(2))
    # targets of one are the hard loss
    chosen, rejected = t(2.0, -1.0, 0.5), t(0.0, 1.0, 0.5)
    assert bradley_terry_loss(chosen, rejected, target=t(1.0, 1.0, 1.0)).item() == pytest.approx(
        bradley_terry_loss(chosen, rejected).item())
    # per pair, then averaged: d = 2 at target 0.8, d = 0 at target 0.5
    assert bradley_terry_loss(t(2.0, 0.0), t(0.0, 0.0), target=t(0.8, 0.5)).item() == pytest.approx(
        (0.526928 + math.log(2)) / 2, abs=1e-6)


def test_dpo_sigmoid_and_implicit_rewards():
    # log-ratios: chosen -1 - (-2) = 1, rejected -3 - (-2) = -1; beta 0.5 -> beta * (1 - (-1)) = 1
    loss, chosen, rejected = dpo_loss(t(-1.0), t(-3.0), t(-2.0), t(-2.0), beta=0.5)
    assert loss.item() == pytest.approx(nll_sigmoid(1.0))  # 0.313262
    assert chosen.item() == pytest.approx(0.5) and rejected.item() == pytest.approx(-0.5)


def test_conservative_dpo_smooths_the_label():
    loss, _, _ = dpo_loss(t(-1.0), t(-3.0), t(-2.0), t(-2.0), beta=0.5, label_smoothing=0.1)
    assert loss.item() == pytest.approx(0.9 * nll_sigmoid(1.0) + 0.1 * nll_sigmoid(-1.0))  # 0.413262


def test_ipo_is_a_squared_distance_to_one_over_two_beta():
    loss, _, _ = dpo_loss(t(-1.0), t(-3.0), t(-2.0), t(-2.0), beta=0.5, loss_type="ipo")
    assert loss.item() == pytest.approx((2.0 - 1 / (2 * 0.5)) ** 2)
    with pytest.raises(ValueError, match="unknown DPO loss"):
        dpo_loss(t(0.0), t(0.0), t(0.0), t(0.0), loss_type="kto")


def test_policy_equal_to_reference_gives_log_two():
    loss, chosen, rejected = dpo_loss(t(-4.0, -1.0), t(-2.0, -5.0), t(-4.0, -1.0), t(-2.0, -5.0))
    assert loss.item() == pytest.approx(math.log(2))
    assert chosen.abs().sum() == 0 and rejected.abs().sum() == 0


def test_sequence_logprobs_sum_target_tokens_only():
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0], [5.0, -5.0]]])
    logps, counts = sequence_logprobs(logits, torch.tensor([[IGNORE_INDEX, 0, 1]]))
    assert logps.item() == pytest.approx(-(math.log(2) + math.log(4)))
    assert counts.item() == 2


def test_pairwise_accuracy_counts_ties_half():
    assert pairwise_accuracy(t(1.0, 0.0, 2.0), t(0.0, 0.0, 3.0)).item() == pytest.approx(0.5)
