"""KL estimators, token log-probabilities and entropy, PPO policy and value losses by hand."""

import math

import pytest
import torch

from rayalign.algorithms.kl import kl_estimate
from rayalign.algorithms.policy_loss import (entropy_from_logits, kl_loss, policy_loss, selective_logprobs,
                                             truncated_importance_weights, value_loss)


def t(*values):
    return torch.tensor(values, dtype=torch.float32)


def test_kl_estimators_by_hand():
    # pi gives the token 0.5, ref 0.25: log-ratio ln 2
    logp, ref = t(math.log(0.5)), t(math.log(0.25))
    assert kl_estimate(logp, ref, "k1").item() == pytest.approx(math.log(2))                 # 0.693147
    assert kl_estimate(logp, ref, "k2").item() == pytest.approx(0.5 * math.log(2) ** 2)      # 0.240227
    assert kl_estimate(logp, ref, "k3").item() == pytest.approx(0.5 - math.log(0.5) - 1)     # 0.193147
    # k3 is never negative and zero where the two agree
    x, y = torch.randn(100), torch.randn(100)
    assert (kl_estimate(x, y, "k3") >= 0).all() and kl_estimate(x, x, "k3").abs().max() == 0
    with pytest.raises(ValueError, match="choose from.*k1.*k2.*k3"):
        kl_estimate(logp, ref, "k4")


def test_selective_logprobs_by_hand():
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0]]])
    # softmax [1/2, 1/2] picks token 0; softmax [3/4, 1/4] picks token 1
    torch.testing.assert_close(selective_logprobs(logits, torch.tensor([[0, 1]])), t(-math.log(2), -math.log(4))[None])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_selective_logprobs_match_log_softmax_in_float32(dtype):
    torch.manual_seed(0)
    logits = torch.randn(5, 7, 50).to(dtype)  # log-probabilities near -4: 1e-6 is a few ulps
    tokens = torch.randint(0, 50, (5, 7))
    expected = torch.log_softmax(logits.float(), -1).gather(-1, tokens[..., None]).squeeze(-1)
    actual = selective_logprobs(logits, tokens, chunk_rows=2)
    assert actual.dtype == torch.float32
    torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-6)


def test_entropy_by_hand_and_under_autograd():
    logits = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [math.log(3.0), 0.0, -1e4, -1e4]]])
    # uniform over 4: ln 4; [3/4, 1/4]: -(0.75 ln 0.75 + 0.25 ln 0.25) = 0.562335
    expected = t(math.log(4), -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    torch.testing.assert_close(entropy_from_logits(logits), expected[None])
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 9, requires_grad=True)
    entropy_from_logits(logits, chunk_rows=2).sum().backward()
    ours = logits.grad.clone()
    logits.grad = None
    probs = torch.softmax(logits, -1)
    (-(probs * torch.log_softmax(logits, -1)).sum(-1)).sum().backward()
    torch.testing.assert_close(ours, logits.grad)


def test_policy_loss_clips_by_the_sign_of_the_advantage():
    # tokens: (A, ratio) = (+1, 1.5) clipped to 1.2 | (+1, 0.5) unclipped | (-1, 0.5) clipped to 0.8 |
    # (-1, 1.5) unclipped | padding
    ratios = t(1.5, 0.5, 0.5, 1.5, 100.0)
    old_logp = torch.full((1, 5), -2.0, requires_grad=True)
    logp = (old_logp.detach() + ratios.log()).view(1, 5).requires_grad_()
    advantages = t(1.0, 1.0, -1.0, -1.0, 7.0).view(1, 5).requires_grad_()
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    loss, stats = policy_loss(logp, old_logp, advantages, mask, clip_low=0.2)
    # per token -min(r A, clip(r) A): -1.2, -0.5, 0.8, 1.5 -> mean 0.6 / 4
    assert loss.item() == pytest.approx(0.15)
    assert stats["clip_fraction"].item() == pytest.approx(0.5)
    assert stats["ratio_mean"].item() == pytest.approx(1.0)
    # k3 of KL(old || new): r - 1 - ln r = 0.094535 at r = 1.5, 0.193147 at r = 0.5
    assert stats["approx_kl"].item() == pytest.approx((0.5 - math.log(1.5) + -0.5 - math.log(0.5)) / 2, rel=1e-5)
    loss.backward()
    # only unclipped tokens pass a gradient, d(-r A)/d logp = -r A, over 4 tokens
    torch.testing.assert_close(logp.grad, t(0.0, -0.5 / 4, 0.0, 1.5 / 4, 0.0)[None])
    assert old_logp.grad is None and advantages.grad is None


def test_clip_higher_widens_the_upper_bound_only():
    logp, old = t(math.log(1.5), math.log(0.5))[None], torch.zeros(1, 2)
    mask = torch.ones(1, 2)
    # ratio 1.5 below 1 + 0.6: -1.5 unclipped; ratio 0.5 still clipped at 1 - 0.2 for A = -1: 0.8
    loss, stats = policy_loss(logp, old, t(1.0, -1.0)[None], mask, clip_low=0.2, clip_high=0.6)
    assert loss.item() == pytest.approx((-1.5 + 0.8) / 2)
    assert stats["clip_fraction"].item() == pytest.approx(0.5)


def test_truncated_importance_weights_by_hand():
    # proximal / behaviour probability ratios 1, 0.5, 3 (capped at 2) and a padded token
    behaviour = torch.full((1, 4), -1.0)
    proximal = behaviour + t(0.0, math.log(0.5), math.log(3.0), 5.0)[None]
    mask = torch.tensor([[1, 1, 1, 0]])
    weights, stats = truncated_importance_weights(proximal, behaviour, mask, cap=2.0)
    torch.testing.assert_close(weights[0, :3], t(1.0, 0.5, 2.0))
    assert stats["is_weight_mean"].item() == pytest.approx(3.5 / 3)
    assert stats["is_weight_max"].item() == pytest.approx(2.0)
    assert stats["is_truncated_fraction"].item() == pytest.approx(1 / 3)


def test_importance_weights_scale_each_tokens_term_and_are_1_on_policy():
    logp = torch.tensor([[-1.0, -2.0, -0.5]], requires_grad=True)
    old, advantages, mask = logp.detach() - 0.1, t(1.0, -2.0, 0.5)[None], torch.ones(1, 3)
    on_policy, stats = truncated_importance_weights(old, old.clone(), mask, cap=2.0)
    assert torch.equal(on_policy, torch.ones(1, 3)) and stats["is_truncated_fraction"].item() == 0.0
    assert torch.equal(policy_loss(logp, old, advantages, mask, weights=on_policy)[0],
                       policy_loss(logp, old, advantages, mask)[0])
    weights = t(0.5, 2.0, 1.0)[None]
    ratio = torch.exp(logp.detach() - old)
    per_token = torch.max(-ratio * advantages, -ratio.clamp(0.8, 1.2) * advantages)
    weighted = policy_loss(logp, old, advantages, mask, weights=weights)[0]
    assert weighted.item() == pytest.approx((weights * per_token).mean().item())


def test_value_loss_by_hand():
    values, old, returns = t(1.0, 1.0, 3.0)[None], t(0.5, 0.9, 0.0)[None], t(2.0, 0.0, 0.0)[None]
    mask = torch.tensor([[1, 1, 0]])
    # token 0: (1 - 2)^2 = 1 vs clipped v = 0.5 + 0.2 = 0.7: (0.7 - 2)^2 = 1.69 -> 0.845
    # token 1: v within 0.9 +- 0.2: 1 -> 0.5
    loss, stats = value_loss(values, old, returns, mask, clip=0.2)
    assert loss.item() == pytest.approx((0.845 + 0.5) / 2)
    assert stats["value_clip_fraction"].item() == pytest.approx(0.5)
    # residuals 1, -1 and returns 2, 0 have the same variance: nothing explained
    assert stats["explained_variance"].item() == pytest.approx(0.0)
    unclipped, stats = value_loss(values, old, returns, mask, clip=0)
    assert unclipped.item() == pytest.approx(0.5) and stats["value_clip_fraction"].item() == 0


def test_kl_loss_reduces_over_response_tokens():
    logp, ref = t(math.log(0.5), math.log(0.5), 0.0)[None], t(math.log(0.25), math.log(0.5), -30.0)[None]
    # k1 of ln 2 and 0 over two tokens; the padded token is ignored
    assert kl_loss(logp, ref, torch.tensor([[1, 1, 0]]), "k1").item() == pytest.approx(math.log(2) / 2)


def test_normaliser_makes_half_batches_add_up_to_the_full_batch():
    torch.manual_seed(0)
    logp, old, ref, adv = (torch.randn(4, 6) for _ in range(4))
    values, old_values, returns = (torch.randn(4, 6) for _ in range(3))
    mask = torch.arange(6) < torch.tensor([[6], [2], [4], [1]])
    total = mask.sum().item()
    halves = [slice(0, 2), slice(2, 4)]

    def split(loss_fn, *tensors):
        return sum(loss_fn(*(x[half] for x in tensors), mask[half], normaliser=total) for half in halves)

    torch.testing.assert_close(split(lambda *a, **k: policy_loss(*a, **k)[0], logp, old, adv),
                               policy_loss(logp, old, adv, mask)[0])
    torch.testing.assert_close(split(lambda *a, **k: value_loss(*a, **k)[0], values, old_values, returns),
                               value_loss(values, old_values, returns, mask)[0])
    torch.testing.assert_close(split(lambda *a, **k: kl_loss(*a, kind="k3", **k), logp, ref),
                               kl_loss(logp, ref, mask, "k3"))
