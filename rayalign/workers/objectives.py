"""Forward passes that turn a batch into a loss and stats, one per training method.

`make_objective(name, options)` returns `objective(model, batch) -> (loss, stats)`. Pair
batches hold B chosen rows then B rejected rows (see data/preference.py).
"""

from __future__ import annotations

import torch

from rayalign.algorithms.preference import bradley_terry_loss, dpo_loss, pairwise_accuracy, sequence_logprobs
from rayalign.algorithms.sft import sft_loss


def _forward(model, batch: dict) -> torch.Tensor:
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def sft_objective(model, batch: dict):
    loss, tokens = sft_loss(_forward(model, batch), batch["labels"])
    return loss, {"loss_sum": loss.detach() * tokens, "tokens": tokens}


def _pair_stats(chosen: torch.Tensor, rejected: torch.Tensor) -> dict:
    """Sums over pairs (so held-out batches add up exactly) and their count."""
    chosen, rejected = chosen.detach().float(), rejected.detach().float()
    return {
        "pairs": torch.tensor(float(len(chosen))),
        "correct": pairwise_accuracy(chosen, rejected) * len(chosen),
        "margin_sum": (chosen - rejected).sum(),
        "chosen_sum": chosen.sum(),
        "rejected_sum": rejected.sum(),
        "reward_sq_sum": (chosen ** 2).sum() + (rejected ** 2).sum(),
    }


def reward_objective(margin: bool = False, center_coef: float = 0.0):
    def objective(model, batch: dict):
        rewards = _forward(model, batch).squeeze(-1).float()
        chosen, rejected = rewards.chunk(2)
        loss = bradley_terry_loss(chosen, rejected, batch.get("margin") if margin else None, center_coef,
                                  batch.get("target"))
        return loss, _pair_stats(chosen, rejected)

    return objective


def pair_logprobs(model, batch: dict):
    """Sequence log-probabilities of the chosen and rejected completions (for the reference)."""
    logps, _ = sequence_logprobs(_forward(model, batch), batch["labels"])
    chosen, rejected = logps.chunk(2)
    return torch.zeros(()), {"chosen": chosen, "rejected": rejected}


def dpo_objective(beta: float = 0.1, loss: str = "sigmoid", label_smoothing: float = 0.0):
    def objective(model, batch: dict):
        logps, tokens = sequence_logprobs(_forward(model, batch), batch["labels"])
        reference = torch.cat([batch["reference_chosen"], batch["reference_rejected"]])
        if loss == "ipo":  # IPO compares per-token averages
            logps, reference = logps / tokens.clamp(min=1), reference / tokens.clamp(min=1)
        policy_chosen, policy_rejected = logps.chunk(2)
        reference_chosen, reference_rejected = reference.chunk(2)
        value, chosen_reward, rejected_reward = dpo_loss(policy_chosen, policy_rejected, reference_chosen,
                                                         reference_rejected, beta, loss, label_smoothing)
        return value, _pair_stats(chosen_reward, rejected_reward)

    return objective


def make_objective(name: str, options: dict):
    """The objective called `name`; factories take `options`, plain forwards take none."""
    from rayalign.workers import rl_objectives as rl

    factories = {"rm": reward_objective, "dpo": dpo_objective, "policy": rl.policy_objective,
                 "critic": rl.critic_objective}
    plain = {"sft": sft_objective, "pair_logprobs": pair_logprobs, "logprobs": rl.response_logprobs,
             "reference_logprobs": rl.reference_logprobs, "values": rl.values_objective}
    if name in factories:
        return factories[name](**options)
    if name in plain:
        return plain[name]
    raise ValueError(f"unknown objective {name!r}; known: {sorted(factories | plain)}")
