"""Forward passes that turn a batch into a loss, one per training method, by name."""

from __future__ import annotations

from rayalign.algorithms.sft import sft_loss


def sft_objective(model, batch: dict):
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    loss, tokens = sft_loss(logits, batch["labels"])
    return loss, {"loss_sum": loss.detach() * tokens, "tokens": tokens}


OBJECTIVES = {"sft": sft_objective}
