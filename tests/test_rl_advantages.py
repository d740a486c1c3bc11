"""Advantage estimators (GRPO, RLOO, REINFORCE++, GAE) against hand-computed values."""

import math

import pytest
import torch

from rayalign.algorithms.advantages import (compute_advantages, discounted_returns, gae, group_advantages,
                                            masked_mean, masked_whiten, reinforce_pp_advantages,
                                            rloo_advantages, token_rewards)


def t(*values):
    return torch.tensor(values, dtype=torch.float32)


def close(actual, expected):
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=torch.float32), rtol=1e-5, atol=1e-6)


# Two responses of different lengths: 2 tokens and 1 token, then padding.
MASK = torch.tensor([[True, True, False], [True, False, False]])


def test_masked_mean_and_whiten_ignore_padding():
    x = torch.tensor([[1.0, 3.0, 100.0], [5.0, float("nan"), -7.0]])
    assert masked_mean(x, MASK).item() == pytest.approx(3.0)             # (1 + 3 + 5) / 3
    close(masked_mean(x, MASK.float(), dim=1), [2.0, 5.0])
    close(masked_mean(x, torch.zeros_like(MASK), dim=1), [0.0, 0.0])     # empty rows give 0, not NaN
    # mean 3, deviations -2, 0, 2, unbiased variance (4 + 0 + 4) / 2 = 4, std 2
    close(masked_whiten(x, MASK), [[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    close(masked_whiten(x, MASK, shift_mean=False), [[2.0, 3.0, 0.0], [4.0, 0.0, 0.0]])


def test_token_rewards_put_the_score_on_the_last_token_and_kl_on_all():
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    kl = torch.full((3, 4), 0.1)
    # 0.5 * 0.1 = 0.05 off every response token; score on the last one; nothing for the empty row
    close(token_rewards(t(1.0, 2.0, 3.0), mask, kl, kl_coef=0.5),
          [[-0.05, -0.05, 0.95, 0.0], [1.95, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    close(token_rewards(t(1.0, 2.0, 3.0), mask), [[0, 0, 1, 0], [2, 0, 0, 0], [0, 0, 0, 0]])


def test_group_advantages_use_the_unbiased_group_std():
    scores = t(1.0, 2.0, 3.0, 6.0, 5.0, 5.0, 5.0, 5.0)
    # group 0: mean 3, deviations -2 -1 0 3, unbiased std sqrt((4 + 1 + 0 + 9) / 3); group 1: all equal
    std = math.sqrt(14 / 3)
    close(group_advantages(scores, 4), [-2 / std, -1 / std, 0.0, 3 / std, 0, 0, 0, 0])
    close(group_advantages(scores, 4, scale=False), [-2.0, -1.0, 0.0, 3.0, 0, 0, 0, 0])


@pytest.mark.parametrize("size", [2, 3, 5, 7, 16])
def test_a_group_of_equal_rewards_has_exactly_zero_advantage(size):
    for value in (0.7, 0.1, 1 / 3, -2.9):
        advantages = group_advantages(torch.full((size,), value), size)
        assert (advantages == 0).all(), (value, advantages)


def test_groups_must_split_evenly_and_hold_two():
    with pytest.raises(ValueError, match="groups of 3"):
        group_advantages(t(1, 2, 3, 4), 3)
    with pytest.raises(ValueError, match="at least 2"):
        rloo_advantages(t(1, 2), 1)


def test_rloo_subtracts_the_mean_of_the_others():
    # 1 - (2+3+6)/3 = -8/3; 2 - 10/3 = -4/3; 3 - 9/3 = 0; 6 - 6/3 = 4; then a group of two
    close(rloo_advantages(t(1.0, 2.0, 3.0, 6.0), 4), [-8 / 3, -4 / 3, 0.0, 4.0])
    close(rloo_advantages(t(0.0, 1.0, 4.0, 4.0), 2), [-1.0, 1.0, 0.0, 0.0])


def test_discounted_returns_skip_padding():
    rewards = t(1.0, 0.0, 2.0, 9.0, 3.0, 5.0, 7.0, 1.0).view(2, 4)
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    # gamma 0.5: G2 = 2, G1 = 0 + 0.5 * 2 = 1, G0 = 1 + 0.5 * 1 = 1.5; the padded 9, 5, 7, 1 count for nothing
    close(discounted_returns(rewards, mask, 0.5), [[1.5, 1.0, 2.0, 0.0], [3.0, 0.0, 0.0, 0.0]])


def test_reinforce_pp_whitens_returns_over_the_whole_batch():
    rewards = t(1.0, 0.0, 2.0, 9.0, 3.0, 5.0, 7.0, 1.0).view(2, 4)
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    # returns 1.5 1 2 | 3: mean 1.875, squared deviations sum 2.1875, unbiased variance 2.1875 / 3
    std = math.sqrt(2.1875 / 3)
    expected = [[(1.5 - 1.875) / std, (1.0 - 1.875) / std, (2.0 - 1.875) / std, 0.0], [(3 - 1.875) / std, 0, 0, 0]]
    close(reinforce_pp_advantages(rewards, mask, 0.5), expected)


def test_gae_by_hand_with_a_truncated_row():
    rewards = torch.tensor([[0.0, 0.0, 1.0, 3.0], [0.0, 2.0, 0.0, 0.0]])
    values = torch.tensor([[0.5, 0.6, 0.7, 5.0], [1.0, 1.0, 9.0, 9.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    advantages, returns = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    # row 0: deltas 0 + 0.9*0.6 - 0.5 = 0.04, 0 + 0.9*0.7 - 0.6 = 0.03, 1 + 0 - 0.7 = 0.3 (V = 0 after the end)
    #        A2 = 0.3, A1 = 0.03 + 0.72 * 0.3 = 0.246, A0 = 0.04 + 0.72 * 0.246 = 0.21712
    # row 1 (cut after 2 tokens; the 9s past the end are ignored): deltas 0.9*1 - 1 = -0.1, 2 - 1 = 1
    #        A1 = 1, A0 = -0.1 + 0.72 * 1 = 0.62
    close(advantages, [[0.21712, 0.246, 0.3, 0.0], [0.62, 1.0, 0.0, 0.0]])
    close(returns, [[0.71712, 0.846, 1.0, 0.0], [1.62, 2.0, 0.0, 0.0]])


def test_gae_with_gamma_and_lambda_one_is_returns_minus_values():
    torch.manual_seed(0)
    rewards, values = torch.randn(3, 6), torch.randn(3, 6)
    mask = torch.arange(6) < torch.tensor([[6], [3], [1]])
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    close(advantages, torch.where(mask, discounted_returns(rewards, mask, 1.0) - values, 0.0))
    close(returns, discounted_returns(rewards, mask, 1.0))


# ---------------------------------------------------------------- compute_advantages


def test_grpo_and_rloo_broadcast_the_sequence_advantage_to_response_tokens():
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 0, 0]])
    advantages, returns = compute_advantages("grpo", scores=t(1, 2, 3, 6), mask=mask, group_size=4,
                                             scale_rewards=False)
    close(advantages, [[-2, -2, 0], [-1, 0, 0], [0, 0, 0], [3, 0, 0]])
    assert returns is None
    advantages, _ = compute_advantages("rloo", scores=t(0, 1, 4, 4), mask=mask, group_size=2)
    close(advantages, [[-1, -1, 0], [1, 0, 0], [0, 0, 0], [0, 0, 0]])


def test_kl_in_the_reward_for_grpo_and_rloo_subtracts_the_kl_still_to_come():
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    kl = torch.tensor([[0.2, 0.4, 50.0], [0.6, 50.0, 50.0]])
    advantages, _ = compute_advantages("rloo", scores=t(0, 1), mask=mask, group_size=2, kl=kl, kl_coef=0.5)
    # row 0: -1 - 0.5 * (0.2 + 0.4) = -1.3, then -1 - 0.5 * 0.4 = -1.2; row 1: 1 - 0.5 * 0.6 = 0.7
    close(advantages, [[-1.3, -1.2, 0.0], [0.7, 0.0, 0.0]])


def test_reinforce_pp_and_ppo_by_hand():
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    # token rewards [[0, 1, 0], [3, 0, 0]], gamma 1: returns 1 1 | 3, mean 5/3,
    # deviations -2/3 -2/3 4/3, unbiased variance (4/9 + 4/9 + 16/9) / 2 = 4/3
    std = math.sqrt(4 / 3)
    whitened = [[-2 / 3 / std, -2 / 3 / std, 0.0], [4 / 3 / std, 0.0, 0.0]]
    advantages, returns = compute_advantages("reinforce_pp", scores=t(1, 3), mask=mask, group_size=2)
    close(advantages, whitened)
    assert returns is None
    # PPO with a critic that says 0 everywhere and gamma = lam = 1: GAE = those returns, then whitened
    advantages, returns = compute_advantages("ppo", scores=t(1, 3), mask=mask, group_size=2,
                                             values=torch.zeros(2, 3), lam=1.0)
    close(advantages, whitened)
    close(returns, [[1, 1, 0], [3, 0, 0]])


def test_whiten_whitens_the_scores_first():
    # scores 1, 3: mean 2, unbiased std sqrt(2) -> -1/sqrt 2, 1/sqrt 2; RLOO then gives -sqrt 2, sqrt 2
    mask = torch.ones(2, 1, dtype=torch.bool)
    advantages, _ = compute_advantages("rloo", scores=t(1, 3), mask=mask, group_size=2, whiten=True)
    close(advantages, [[-math.sqrt(2)], [math.sqrt(2)]])


def test_bad_requests_are_named():
    mask = torch.ones(2, 1)
    with pytest.raises(ValueError, match="critic's values"):
        compute_advantages("ppo", scores=t(1, 3), mask=mask, group_size=2)
    with pytest.raises(ValueError, match="choose from.*grpo.*rloo.*reinforce_pp.*ppo"):
        compute_advantages("a2c", scores=t(1, 3), mask=mask, group_size=2)
