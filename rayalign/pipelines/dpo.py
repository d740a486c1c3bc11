"""Direct preference optimisation (DPO, conservative DPO, IPO) against a frozen reference.

    1. encode the pairs
    2. start the policy trainer group
    3. reference log-probabilities: one forward pass of the untrained policy over every pair,
       before any update (with LoRA that is the base model with the adapter off; with full
       weights it spares a second copy of the model). Saved in the run folder, so a resumed
       run reuses them.
    4. the offline loop on the DPO loss; held-out preference accuracy of the implicit
       reward before and after
    5. export the adapter or model
"""

from __future__ import annotations

import json

from rayalign.config import RunConfig
from rayalign.console import say
from rayalign.data.preference import PairExample, collate_pairs, load_pairs, pair_tokens
from rayalign.models.chain import resolve_start
from rayalign.models.loading import load_tokenizer
from rayalign.pipelines.offline import (OfflineMethod, forward_all, split_held_out, summarise_pairs, total_steps,
                                        train_offline, trainer_group)
from rayalign.runs import RunDir, write_atomic
from rayalign.workers.group import ActorGroup
from rayalign.workers.cluster import connect

REFERENCE_FILE = "reference_logprobs.json"


def attach_reference(run: RunDir, trainers: ActorGroup, pairs: list[PairExample], method: OfflineMethod,
                     micro: int) -> None:
    """Give every pair its reference log-probabilities, computed once before training."""
    path = run.path / REFERENCE_FILE
    if path.is_file():
        saved = json.loads(path.read_text())
    elif run.latest_checkpoint():
        raise FileNotFoundError(f"{path} is missing but the run has checkpoints: the reference cannot be "
                                "recomputed from trained weights; start the run under a new name")
    else:
        batches = forward_all(trainers, pairs, method.collate, micro, objective="pair_logprobs")
        saved = {"chosen": [v for b in batches for v in b["chosen"]],
                 "rejected": [v for b in batches for v in b["rejected"]]}
        write_atomic(path, json.dumps(saved))
    if len(saved["chosen"]) != len(pairs):
        raise ValueError(f"{path} holds {len(saved['chosen'])} pairs, the data has {len(pairs)}; "
                         "the data changed since the run started")
    for pair, chosen, rejected in zip(pairs, saved["chosen"], saved["rejected"]):
        pair.reference_chosen, pair.reference_rejected = chosen, rejected


def run_dpo(config: RunConfig) -> dict:
    run = RunDir(config, tensorboard=config.logging.tensorboard)
    config = resolve_start(config)  # a run folder or adapter to start from: merged once, or continued
    data = config.data
    tokenizer = load_tokenizer(config.model.name_or_path)
    train_set, eval_set = split_held_out(
        load_pairs(data.train, tokenizer, data.max_length),
        load_pairs(data.eval, tokenizer, data.max_length) if data.eval else [], data, config.seed)
    steps = total_steps(config, len(train_set))
    say(f"[dpo] {len(train_set)} training pairs, {len(eval_set)} held out; {steps} steps")
    method = OfflineMethod("dpo", config.dpo.model_dump(), "causal_lm",
                           lambda pairs: collate_pairs(pairs, tokenizer.pad_token_id), summarise_pairs, pair_tokens)

    connect(config.placement.address)
    trainers, counts = trainer_group(config, method, steps, role="PolicyTrainer")
    say(f"[dpo] {counts}")
    with trainers:
        attach_reference(run, trainers, train_set + eval_set, method, config.train.micro_batch_size)
        before, after, step = train_offline(config, run, trainers, method, train_set, eval_set, steps)
        trainers.call("export", str(run.final), config.model.name_or_path)
        trainers.call("shutdown")

    report = {
        "method": "dpo",
        "steps": step,
        "eval_accuracy_before": before.get("eval/accuracy"),
        "eval_accuracy_after": after.get("eval/accuracy"),
        "eval_margin_before": before.get("eval/margin"),
        "eval_margin_after": after.get("eval/margin"),
        "trainable": counts,
        "final": str(run.final),
    }
    run.write_report(report)
    run.close()
    return report
