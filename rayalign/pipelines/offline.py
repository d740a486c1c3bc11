"""The step loop shared by the offline methods (SFT, reward models, DPO).

A method is described by how it batches examples and how it sums up evaluation stats;
the loop owns the data order (so a resumed run continues at exactly the next sample),
logging, periodic evaluation and atomic checkpoints.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Callable

from tqdm import tqdm

from rayalign.config import DataConfig, RunConfig
from rayalign.console import say, terminal
from rayalign.data.batching import sample_indices
from rayalign.runs import RunDir
from rayalign.workers.group import ActorGroup
from rayalign.workers.trainer import TrainerSpec, setup_trainers, trainer_actors


@dataclass
class OfflineMethod:
    name: str                                    # objective name in workers/objectives.py
    options: dict                                # its keyword options
    head: str                                    # "causal_lm" or "reward"
    collate: Callable[[list], dict]              # examples -> one micro-batch
    summarise: Callable[[list[dict]], dict]      # evaluation stats of all batches -> metrics
    size: Callable[[object], int]                # tokens in one example, for throughput


def split_held_out(train: list, held_out: list, data: DataConfig, seed: int) -> tuple[list, list]:
    """`data.eval` if given, else a seeded `eval_fraction` of the training set; then the caps."""
    if not held_out and data.eval_fraction:
        train = list(train)
        random.Random(seed).shuffle(train)
        cut = max(1, int(len(train) * data.eval_fraction))
        held_out, train = train[:cut], train[cut:]
    return train[: data.max_train_samples], held_out[: data.max_eval_samples]


def summarise_pairs(stats: list[dict]) -> dict:
    """Pairwise accuracy (ties count half), mean margin and reward statistics over all pairs."""
    pairs = sum(s["pairs"] for s in stats)
    mean = sum(s["chosen_sum"] + s["rejected_sum"] for s in stats) / (2 * pairs)
    variance = sum(s["reward_sq_sum"] for s in stats) / (2 * pairs) - mean ** 2
    return {
        "eval/accuracy": sum(s["correct"] for s in stats) / pairs,
        "eval/margin": sum(s["margin_sum"] for s in stats) / pairs,
        "eval/chosen": sum(s["chosen_sum"] for s in stats) / pairs,
        "eval/rejected": sum(s["rejected_sum"] for s in stats) / pairs,
        "eval/reward_mean": mean,
        "eval/reward_std": math.sqrt(max(variance, 0.0)),
        "eval/pairs": pairs,
    }


def total_steps(config: RunConfig, examples: int) -> int:
    train = config.train
    per_step = train.micro_batch_size * train.gradient_accumulation_steps * config.placement.num_workers
    return train.max_steps or max(1, math.ceil(train.epochs * examples / per_step))


def trainer_group(config: RunConfig, method: OfflineMethod, steps: int, role: str) -> tuple[ActorGroup, str]:
    """Start one DeepSpeed rank per actor and build the model on each; returns (group, counts)."""
    placement = config.placement
    group = trainer_actors(role, placement, config.seed, placement.cpus_per_worker, placement.gpus_per_worker)
    spec = TrainerSpec(config.model, config.train, steps, method.name, method.options, method.head)
    return group, setup_trainers(group, spec, placement)


def forward_all(trainers: ActorGroup, examples: list, collate: Callable[[list], dict], micro: int,
                objective: str | None = None) -> list[dict]:
    """Per-batch stats over `examples` in order, spread over the ranks. Every rank runs the
    same number of batches (ZeRO-3 forwards are collective); padding repeats are dropped."""
    batches = [collate(examples[i: i + micro]) for i in range(0, len(examples), micro)]
    world = len(trainers)
    rounds = math.ceil(len(batches) / world)
    padded = batches + [batches[0]] * (rounds * world - len(batches))
    results = trainers.call_each("evaluate", [(padded[r::world], objective) for r in range(world)])
    return [results[i % world][i // world] for i in range(len(batches))]


def evaluate(trainers: ActorGroup, examples: list, method: OfflineMethod, micro: int) -> dict:
    """The method's held-out metrics."""
    return method.summarise(forward_all(trainers, examples, method.collate, micro)) if examples else {}


def train_offline(config: RunConfig, run: RunDir, trainers: ActorGroup, method: OfflineMethod,
                  train_set: list, eval_set: list, steps: int) -> tuple[dict, dict, int]:
    """Resume or measure the start, run `steps` optimizer steps, measure the end.
    Returns (held-out metrics before, after, steps done)."""
    train = config.train
    world = len(trainers)
    micro, accumulation = train.micro_batch_size, train.gradient_accumulation_steps
    per_step = micro * accumulation * world

    resumed = run.latest_checkpoint()
    if resumed:
        folder, state = resumed
        trainers.call("load_checkpoint", str(folder))
        step, seen, before = state["step"], state["samples_seen"], state["eval_before"]
        say(f"[{method.name}] resumed from {folder} (step {step}, {seen} samples seen)")
    else:
        step, seen = 0, 0
        before = evaluate(trainers, eval_set, method, micro)
        if before:
            run.log(0, before)
            say(f"[{method.name}] held-out before: {_brief(before)}")

    bar = tqdm(total=steps, initial=step, desc=method.name, disable=not config.logging.progress, dynamic_ncols=True,
               file=terminal())
    while step < steps:
        started = time.perf_counter()
        batch = [train_set[i] for i in sample_indices(len(train_set), config.seed, seen, per_step)]
        per_rank = accumulation * micro
        shards = [[method.collate(batch[r * per_rank + m * micro: r * per_rank + (m + 1) * micro])
                   for m in range(accumulation)] for r in range(world)]
        stats = trainers.call_each("train_step", [(shard,) for shard in shards])
        step, seen = step + 1, seen + per_step
        elapsed = time.perf_counter() - started
        metrics = {f"train/{key}": sum(s[key] for s in stats) / world for key in stats[0]}
        metrics.update({"train/tokens_per_s": sum(method.size(e) for e in batch) / elapsed,
                        "time/step_s": elapsed, "samples_seen": seen})
        if train.eval_every and step % train.eval_every == 0 and step < steps:
            metrics.update(evaluate(trainers, eval_set, method, micro))
        if step % train.log_every == 0 or any(key.startswith("eval/") for key in metrics):
            run.log(step, metrics)
        bar.set_postfix(loss=f"{metrics['train/loss']:.4f}")
        bar.update(1)
        if (train.save_every and step % train.save_every == 0) or step == steps:
            with run.checkpoint(step, {"samples_seen": seen, "eval_before": before}) as staging:
                trainers.call("save_checkpoint", str(staging))
    bar.close()

    after = evaluate(trainers, eval_set, method, micro)
    if after:
        run.log(step, after)
    return before, after, step


def _brief(metrics: dict) -> str:
    return ", ".join(f"{key.removeprefix('eval/')} {value:.4f}" for key, value in metrics.items()
                     if isinstance(value, float))
