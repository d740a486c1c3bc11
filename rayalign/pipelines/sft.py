"""Supervised fine-tuning (full, partial or LoRA) on a data-parallel group of DeepSpeed ranks.

The driver is the single controller: it owns the data order, so a resumed run continues
at exactly the next sample. Each step it hands every rank its micro-batches, then logs,
evaluates and checkpoints as configured.
"""

from __future__ import annotations

import math
import random
import time

from tqdm import tqdm

from rayalign.config import DataConfig, RunConfig
from rayalign.data.batching import collate, sample_indices
from rayalign.data.encode import Encoded, encode_sft
from rayalign.data.formats import CONVERSATIONAL, LANGUAGE_MODELING, PROMPT_COMPLETION, load_examples
from rayalign.models.loading import load_tokenizer
from rayalign.runs import RunDir
from rayalign.workers.cluster import connect
from rayalign.workers.group import ActorGroup
from rayalign.workers.trainer import PolicyTrainer

SFT_FORMATS = (LANGUAGE_MODELING, PROMPT_COMPLETION, CONVERSATIONAL)


def load_sft_data(data: DataConfig, tokenizer, seed: int) -> tuple[list[Encoded], list[Encoded]]:
    """Encoded train and held-out examples: `data.eval` if given, else a seeded split."""

    def encode(path: str) -> list[Encoded]:
        fmt, rows = load_examples(path, SFT_FORMATS)
        return [encode_sft(row, fmt, tokenizer, data.max_length, data.completion_only) for row in rows]

    train = encode(data.train)
    if data.eval:
        held_out = encode(data.eval)
    elif data.eval_fraction:
        random.Random(seed).shuffle(train)
        cut = max(1, int(len(train) * data.eval_fraction))
        held_out, train = train[:cut], train[cut:]
    else:
        held_out = []
    return train[: data.max_train_samples], held_out[: data.max_eval_samples]


def shard_step(examples: list[Encoded], world: int, accumulation: int, micro: int, pad_id: int) -> list[list[dict]]:
    """Split one step's examples into per-rank lists of collated micro-batches."""
    per_rank = accumulation * micro
    return [
        [collate(examples[r * per_rank + m * micro: r * per_rank + (m + 1) * micro], pad_id)
         for m in range(accumulation)]
        for r in range(world)
    ]


def evaluate(trainers: ActorGroup, examples: list[Encoded], micro: int, pad_id: int) -> dict:
    """Held-out loss and perplexity over target tokens; every rank runs the same number of
    batches (ZeRO-3 forwards are collective), padding repeats are dropped."""
    if not examples:
        return {}
    batches = [collate(examples[i: i + micro], pad_id) for i in range(0, len(examples), micro)]
    world = len(trainers)
    rounds = math.ceil(len(batches) / world)
    padded = batches + [batches[0]] * (rounds * world - len(batches))
    results = trainers.call_each("evaluate", [(padded[r::world],) for r in range(world)])
    stats = [s for r in range(world) for i, s in enumerate(results[r]) if r + i * world < len(batches)]
    tokens = sum(s["tokens"] for s in stats)
    loss = sum(s["loss_sum"] for s in stats) / max(tokens, 1)
    return {"eval/loss": loss, "eval/perplexity": math.exp(min(loss, 50)), "eval/tokens": tokens}


def run_sft(config: RunConfig) -> dict:
    run = RunDir(config, tensorboard=config.logging.tensorboard)
    train, placement = config.train, config.placement

    # 1. Data, encoded once on the driver.
    tokenizer = load_tokenizer(config.model.name_or_path)
    train_set, eval_set = load_sft_data(config.data, tokenizer, config.seed)
    world = placement.num_workers
    per_step = train.micro_batch_size * train.gradient_accumulation_steps * world
    total_steps = train.max_steps or max(1, math.ceil(train.epochs * len(train_set) / per_step))
    print(f"[sft] {len(train_set)} training examples, {len(eval_set)} held out; "
          f"{total_steps} steps of {per_step} examples on {world} worker(s)", flush=True)

    # 2. The trainer group: one DeepSpeed rank per actor.
    connect(placement.address)
    trainers = ActorGroup(PolicyTrainer, "PolicyTrainer", world, placement.cpus_per_worker,
                          placement.gpus_per_worker, placement.timeout_s,
                          args_for_rank=lambda rank: (rank, world, config.seed, int(placement.cpus_per_worker)))
    master = trainers.gather([trainers.actors[0].rendezvous.remote()], "rendezvous")[0]
    counts = trainers.call("setup", config.model, train, total_steps, "sft", master,
                           placement.backend, placement.timeout_s)[0]
    print(f"[sft] {counts}", flush=True)

    # 3. Resume from the last complete checkpoint, or measure the starting point.
    resumed = run.latest_checkpoint()
    if resumed:
        folder, state = resumed
        trainers.call("load_checkpoint", str(folder))
        step, seen, before = state["step"], state["samples_seen"], state["eval_before"]
        print(f"[sft] resumed from {folder} (step {step}, {seen} samples seen)", flush=True)
    else:
        step, seen = 0, 0
        before = evaluate(trainers, eval_set, train.micro_batch_size, tokenizer.pad_token_id)
        if before:
            run.log(0, before)
            print(f"[sft] held-out loss before: {before['eval/loss']:.4f}", flush=True)

    # 4. The loop: a step is one optimizer update over `per_step` examples.
    bar = tqdm(total=total_steps, initial=step, desc="sft", disable=not config.logging.progress, dynamic_ncols=True)
    while step < total_steps:
        started = time.perf_counter()
        batch = [train_set[i] for i in sample_indices(len(train_set), config.seed, seen, per_step)]
        shards = shard_step(batch, world, train.gradient_accumulation_steps, train.micro_batch_size,
                            tokenizer.pad_token_id)
        stats = trainers.call_each("train_step", [(shard,) for shard in shards])
        step, seen = step + 1, seen + per_step
        elapsed = time.perf_counter() - started
        metrics = {
            "train/loss": sum(s["loss"] for s in stats) / world,
            "train/grad_norm": stats[0]["grad_norm"],
            "train/lr": stats[0]["lr"],
            "train/tokens_per_s": sum(len(example.input_ids) for example in batch) / elapsed,
            "time/step_s": elapsed,
            "samples_seen": seen,
        }
        if config.train.eval_every and step % config.train.eval_every == 0 and step < total_steps:
            metrics.update(evaluate(trainers, eval_set, train.micro_batch_size, tokenizer.pad_token_id))
        if step % train.log_every == 0 or "eval/loss" in metrics:
            run.log(step, metrics)
        bar.set_postfix(loss=f"{metrics['train/loss']:.4f}")
        bar.update(1)
        if (train.save_every and step % train.save_every == 0) or step == total_steps:
            staging = run.staging_checkpoint(step)
            trainers.call("save_checkpoint", str(staging))
            run.commit_checkpoint(staging, step, {"samples_seen": seen, "eval_before": before})
    bar.close()

    # 5. Measure, export, report.
    after = evaluate(trainers, eval_set, train.micro_batch_size, tokenizer.pad_token_id)
    if after:
        run.log(step, after)
    trainers.call("export", str(run.final), config.model.name_or_path)
    trainers.call("shutdown")
    trainers.close()
    report = {
        "method": "sft",
        "steps": step,
        "samples_seen": seen,
        "eval_loss_before": before.get("eval/loss"),
        "eval_loss_after": after.get("eval/loss"),
        "eval_perplexity_before": before.get("eval/perplexity"),
        "eval_perplexity_after": after.get("eval/perplexity"),
        "trainable": counts,
        "final": str(run.final),
    }
    run.write_report(report)
    run.close()
    return report
