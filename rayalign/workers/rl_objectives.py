"""Forward passes of RL over rollout micro-batches (the layout of data/rollout_batch.py).

A batch holds prompts left-padded to P columns and responses right-padded to R columns,
so the logits that predict the response are the last R+1 positions minus the final one:
the model computes no vocabulary logits over the prompt. Per-token tensors are [B, R].

A batch that carries its distinct prompts (`prompt_rows`) runs them once: the prompts' forward
leaves their keys and values in a cache, which is indexed out to the rows that answer each one
(autograd carries the rows' gradients back to it), and the responses run against it. The
prompt's last position predicts the first response token.
"""

from __future__ import annotations

import torch

from rayalign.algorithms.advantages import masked_mean
from rayalign.algorithms.kl import kl_estimate
from rayalign.algorithms.policy_loss import (entropy_from_logits, kl_loss, policy_loss, selective_logprobs,
                                             truncated_importance_weights, value_loss)


def _response_logits(model, batch: dict) -> torch.Tensor:
    width = batch["response_mask"].shape[1]
    if "prompt_rows" in batch:
        return _shared_prompt_logits(model, batch, width)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   position_ids=batch["position_ids"], logits_to_keep=width + 1).logits
    return logits[:, :-1]


def _shared_prompt_logits(model, batch: dict, width: int) -> torch.Tensor:
    rows, mask = batch["prompt_rows"], batch["prompt_mask"]
    prompts = model(input_ids=batch["prompt_ids"], attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                    use_cache=True, logits_to_keep=1)
    cache = prompts.past_key_values
    if cache is None or cache.get_seq_length() != mask.shape[1]:   # e.g. gradient checkpointing drops it
        raise RuntimeError("the policy kept no key/value cache of the prompts, which shared prompts need "
                           "(set rlhf.share_prompts=false)")
    cache.batch_select_indices(rows)
    responses = model(input_ids=batch["input_ids"][:, -width:], attention_mask=batch["attention_mask"],
                      position_ids=batch["position_ids"][:, -width:], past_key_values=cache, use_cache=True).logits
    return torch.cat([prompts.logits[rows], responses[:, :-1]], dim=1)


def _response_targets(batch: dict) -> torch.Tensor:
    return batch["input_ids"][:, -batch["response_mask"].shape[1]:]


def response_logprobs(model, batch: dict):
    """Log-probability of every response token (0 on padding), as per-row lists."""
    logp = selective_logprobs(_response_logits(model, batch), _response_targets(batch))
    return torch.zeros(()), {"logprobs": logp * batch["response_mask"]}


def reference_logprobs(model, batch: dict):
    """The same under the reference: a LoRA policy with its adapter switched off."""
    module = getattr(model, "module", model)  # the DeepSpeed engine wraps the peft model
    if not hasattr(module, "disable_adapter"):
        raise ValueError("reference log-probs from the trainer need a LoRA policy; "
                         "full-weight policies use a ReferenceWorker")
    with module.disable_adapter():
        return response_logprobs(model, batch)


def policy_objective(clip_range: float = 0.2, clip_range_high: float | None = None, kl_coef: float = 0.0,
                     kl_estimator: str = "k3", kl_in_reward: bool = False, entropy_coef: float = 0.0,
                     importance_cap: float = 2.0):
    """The clipped policy-gradient loss, plus KL to the reference as a loss term (unless the
    KL went into the reward) and an optional entropy bonus. A batch that carries the rollout
    engine's `behaviour_logprobs` (off-policy data) weighs each token by the truncated
    importance weight of the policy the update starts from over the one that sampled it."""

    def objective(model, batch: dict):
        logits = _response_logits(model, batch)
        mask, normaliser = batch["response_mask"], batch["normaliser"]
        logp = selective_logprobs(logits, _response_targets(batch))
        old = batch["old_logprobs"] if "old_logprobs" in batch else logp.detach()
        weights, stats = None, {}
        if "behaviour_logprobs" in batch:
            weights, stats = truncated_importance_weights(old, batch["behaviour_logprobs"], mask, importance_cap)
        loss, loss_stats = policy_loss(logp, old, batch["advantages"], mask, clip_range, clip_range_high, normaliser,
                                       weights)
        stats.update(loss_stats)
        entropy = entropy_from_logits(logits if entropy_coef else logits.detach())
        if entropy_coef:
            loss = loss - entropy_coef * (entropy * mask).sum() / normaliser
        if "ref_logprobs" in batch:
            if kl_coef and not kl_in_reward:
                loss = loss + kl_coef * kl_loss(logp, batch["ref_logprobs"], mask, kl_estimator, normaliser)
            stats["kl"] = masked_mean(kl_estimate(logp.detach(), batch["ref_logprobs"], kl_estimator), mask)
        return loss, {**stats, "entropy": masked_mean(entropy.detach(), mask)}

    return objective


def token_values(model, batch: dict) -> torch.Tensor:
    """The critic's value of the state before each response token, [B, R]."""
    width = batch["response_mask"].shape[1]
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                position_ids=batch["position_ids"]).logits
    return out[:, -(width + 1):-1, 0].float()


def values_objective(model, batch: dict):
    return torch.zeros(()), {"values": token_values(model, batch) * batch["response_mask"]}


def critic_objective(value_clip: float = 0.2):
    def objective(model, batch: dict):
        values = token_values(model, batch)
        return value_loss(values, batch["old_values"], batch["returns"], batch["response_mask"], value_clip,
                          batch["normaliser"])

    return objective
