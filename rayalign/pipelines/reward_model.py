"""Reward model: a scalar head on a causal-LM backbone, trained on preference pairs.

    1. encode the pairs (shared prompt + chosen, shared prompt + rejected)
    2. start the trainer group with a reward head (LoRA, partial or full)
    3. Bradley-Terry loss (optional graded margin, soft labels, reward centering) in the offline loop;
       held-out pairwise accuracy and mean margin before and after
    4. score (a sample of) the training pairs for the reward mean/std that RL normalises with,
       and export the model with `reward_stats.json`
"""

from __future__ import annotations

import json
import random

from rayalign.config import RunConfig
from rayalign.console import say
from rayalign.data.preference import collate_pairs, load_pairs, pair_tokens
from rayalign.models.chain import resolve_start
from rayalign.models.loading import load_tokenizer
from rayalign.pipelines.offline import (OfflineMethod, forward_all, split_held_out, summarise_pairs, total_steps,
                                        train_offline, trainer_group)
from rayalign.runs import RunDir, write_atomic
from rayalign.workers.cluster import connect

REWARD_STATS = "reward_stats.json"


def run_reward_model(config: RunConfig) -> dict:
    run = RunDir(config, tensorboard=config.logging.tensorboard)
    config = resolve_start(config)  # a run folder or adapter to start from: merged once, or continued
    data = config.data
    tokenizer = load_tokenizer(config.model.name_or_path)
    rm = config.rm
    train_set, eval_set = split_held_out(
        load_pairs(data.train, tokenizer, data.max_length, rm.margin, rm.soft_labels),
        load_pairs(data.eval, tokenizer, data.max_length, rm.margin, rm.soft_labels) if data.eval else [],
        data, config.seed)
    steps = total_steps(config, len(train_set))
    soft = any(pair.target is not None for pair in train_set)
    say(f"[rm] {len(train_set)} training pairs, {len(eval_set)} held out; {steps} steps"
        + ("; trained on the rows' soft labels" if soft else ""))
    method = OfflineMethod("rm", rm.model_dump(exclude={"stats_samples", "soft_labels"}), "reward",
                           lambda pairs: collate_pairs(pairs, tokenizer.pad_token_id), summarise_pairs, pair_tokens)

    connect(config.placement.address)
    trainers, counts = trainer_group(config, method, steps, role="RewardTrainer")
    say(f"[rm] {counts}")
    with trainers:
        before, after, step = train_offline(config, run, trainers, method, train_set, eval_set, steps)
        sample = random.Random(config.seed).sample(train_set, min(config.rm.stats_samples, len(train_set)))
        scored = summarise_pairs(forward_all(trainers, sample, method.collate, config.train.micro_batch_size))
        trainers.call("export", str(run.final), config.model.name_or_path)
        trainers.call("shutdown")

    stats = {"mean": scored["eval/reward_mean"], "std": scored["eval/reward_std"],
             "train_accuracy": scored["eval/accuracy"], "pairs": scored["eval/pairs"]}
    write_atomic(run.final / REWARD_STATS, json.dumps(stats, indent=2) + "\n")
    report = {
        "method": "rm",
        "steps": step,
        "eval_accuracy_before": before.get("eval/accuracy"),
        "eval_accuracy_after": after.get("eval/accuracy"),
        "eval_margin_before": before.get("eval/margin"),
        "eval_margin_after": after.get("eval/margin"),
        "reward_stats": stats,
        "trainable": counts,
        "final": str(run.final),
    }
    run.write_report(report)
    run.close()
    return report
