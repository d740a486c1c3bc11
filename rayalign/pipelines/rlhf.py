"""RL (PPO, GRPO, RLOO, REINFORCE++) driven by a single controller; on-policy, or
asynchronous with `rlhf.max_staleness` k > 0 (see pipelines/rollout_queue.py).

Every step, for a batch of prompts:
    1. generate    n samples per prompt on the rollout workers (vLLM, or HF generate); with
                   k > 0 the batch was generated while earlier steps trained, by a policy at
                   most k updates older, and the loss corrects for that (importance weights)
    2. score       each sample with the reward sources (weighted sum; every source logged)
    3. forward     log-probs before the update (when a batch is reused or the KL goes into the
                   reward), reference log-probs (KL), critic values (PPO)
    4. advantages  from the scores: group-normalised, leave-one-out, global baseline or GAE
    5. update      the policy (and critic) on mini-batches, DeepSpeed data-parallel
    6. sync        the new weights (adapter or full) to the rollout engines
Held out: greedy answers to the eval prompts, scored by the same rewards, before, every
`eval_every` steps and after. Checkpoints hold the policy (and critic) with optimizer and
RNG, and the step and data position; a rerun of the same command resumes.
"""

from __future__ import annotations

import contextlib
import random
import statistics
import time
from collections import defaultdict

import ray
import torch
from tqdm import tqdm

from rayalign.algorithms.advantages import compute_advantages
from rayalign.algorithms.kl import kl_estimate
from rayalign.config import ConfigError, RunConfig
from rayalign.console import say, terminal
from rayalign.data.batching import sample_indices
from rayalign.data.prompts import PromptExample, load_prompts
from rayalign.data.rollout_batch import BEHAVIOUR, StepData
from rayalign.evaluation.evaluate import Sampling, brief, data_label, flat_metrics
from rayalign.evaluation.evaluate import evaluate as evaluate_prompts
from rayalign.models.chain import resolve_start
from rayalign.models.loading import load_tokenizer
from rayalign.pipelines.offline import split_held_out
from rayalign.pipelines.rl_roles import BatchShape, RlRoles, batch_shape, shares_prompts
from rayalign.pipelines.rollout_queue import RolloutQueue
from rayalign.runs import RunDir
from rayalign.workers.cluster import connect


def run_rlhf(config: RunConfig) -> dict:
    run = RunDir(config, tensorboard=config.logging.tensorboard)
    config = resolve_start(config)  # a run folder or adapter to start from: merged once, or continued
    rl = config.rlhf
    tokenizer = load_tokenizer(config.model.name_or_path)
    train_set, eval_set = load_prompt_sets(config, tokenizer)
    shape = batch_shape(config)
    resumed = run.latest_checkpoint()
    say(f"[rlhf] {rl.algorithm}: {len(train_set)} training prompts, {len(eval_set)} held out; {rl.steps} steps of "
        f"{rl.prompts_per_step} prompts x {rl.samples_per_prompt} samples")

    connect(config.placement.address)
    roles = RlRoles(config, shape, first_step=resumed[1]["step"] if resumed else 0)
    say(f"[rlhf] policy {roles.counts}")
    with contextlib.closing(roles):
        if resumed:
            folder, state = resumed
            roles.trainers.call("load_checkpoint", str(folder))
            if roles.critic is not None:
                roles.critic.call("load_checkpoint", str(folder / "critic"))
            step, seen, before = state["step"], state["samples_seen"], state["eval_before"]
            roles.sync_weights(version=step)
            say(f"[rlhf] resumed from {folder} (step {step}, {seen} prompts seen)")
        else:
            step, seen = 0, 0
            before = evaluate(roles, config, eval_set, tokenizer)
            if before:
                run.log(0, flat_metrics(before))
                say(f"[rlhf] held-out before: {brief(before)}")

        timings: dict[str, list[float]] = defaultdict(list)
        bar = tqdm(total=rl.steps, initial=step, desc=rl.algorithm, disable=not config.logging.progress,
                   dynamic_ncols=True, file=terminal())
        queue = RolloutQueue(roles, lambda at: [train_set[i] for i in sample_indices(
            len(train_set), config.seed, at * rl.prompts_per_step, rl.prompts_per_step)],
            rl.samples_per_prompt, rl.max_staleness)
        while step < rl.steps:
            queue.fill(step)
            metrics = rl_step(roles, config, shape, queue, tokenizer, step)
            step, seen = step + 1, seen + rl.prompts_per_step
            for key, value in metrics.items():
                if key.startswith("time/"):
                    timings[key].append(value)
            if rl.eval_every and step % rl.eval_every == 0 and step < rl.steps:
                held_out = evaluate(roles, config, eval_set, tokenizer)
                if held_out:
                    metrics.update(flat_metrics(held_out))
                    say(f"\n[rlhf] step {step} held-out: {brief(held_out)}")
            run.log(step, {**metrics, "prompts_seen": seen})
            bar.set_postfix(reward=f"{metrics['reward/total_mean']:.3f}")
            bar.update(1)
            if (rl.save_every and step % rl.save_every == 0) or step == rl.steps:
                with run.checkpoint(step, {"samples_seen": seen, "eval_before": before}) as staging:
                    roles.trainers.call("save_checkpoint", str(staging))
                    if roles.critic is not None:
                        roles.critic.call("save_checkpoint", str(staging / "critic"))
        bar.close()

        after = evaluate(roles, config, eval_set, tokenizer)
        if after:
            run.log(step, flat_metrics(after))
        roles.trainers.call("export", str(run.final), config.model.name_or_path)
        roles.shutdown()

    report = {
        "method": f"rlhf/{rl.algorithm}",
        "steps": step,
        "eval_before": flat_metrics(before) if before else {},
        "eval_after": flat_metrics(after) if after else {},
        "held_out_before": before,
        "held_out_after": after,
        "median_seconds": {key.removeprefix("time/"): statistics.median(v) for key, v in timings.items()},
        "trainable": roles.counts,
        "final": str(run.final),
    }
    run.write_report(report)
    run.close()
    return report


def load_prompt_sets(config: RunConfig, tokenizer) -> tuple[list[PromptExample], list[PromptExample]]:
    data, rl = config.data, config.rlhf
    limit = data.max_length - config.rollout.max_new_tokens
    if limit < 1:
        raise ConfigError(f"data.max_length ({data.max_length}) leaves no room for prompts after "
                         f"rollout.max_new_tokens ({config.rollout.max_new_tokens})")
    train = load_prompts(data.train, tokenizer, limit)
    held_out = load_prompts(data.eval, tokenizer, limit) if data.eval else []
    train, held_out = split_held_out(train, held_out, data, config.seed)
    return train, held_out[: rl.eval_samples]


def rl_step(roles: RlRoles, config: RunConfig, shape: BatchShape, queue: RolloutQueue, tokenizer,
            step: int) -> dict:
    """One step of generate -> score -> forward -> advantages -> update -> sync; returns its metrics."""
    rl, micro, pad = config.rlhf, config.train.micro_batch_size, tokenizer.pad_token_id
    times: dict[str, float] = {}
    clock = time.perf_counter()

    # 1. generate (or wait for the batch generated ahead): the samples stay on the object
    #    store as tensors; the controller keeps references and per-sample lengths
    batch = queue.take(step)
    generated, summary = batch.generated, batch.generated.summary
    lengths, rows = summary["response_lengths"], len(summary["response_lengths"])
    data = StepData.of_parts(generated.parts, generated.sizes, max(lengths), pad)
    times["generate"], clock = time.perf_counter() - clock, time.perf_counter()

    # 2. score (the reward worker reads the texts from the parts)
    total, per_source = roles.score_parts([p.prompt for p in batch.prompts], [p.metadata for p in batch.prompts],
                                          rl.samples_per_prompt, generated.parts)
    scores = torch.tensor(total, dtype=torch.float32)
    if rl.missing_eos_penalty is not None:
        scores += torch.tensor([0.0 if done else rl.missing_eos_penalty for done in summary["finished"]])
    if rl.reward_clip is not None:
        scores = scores.clamp(-rl.reward_clip, rl.reward_clip)
    times["score"], clock = time.perf_counter() - clock, time.perf_counter()

    # 3. forward passes the update needs, each where its model is (results stay there too)
    reuse = rl.update_epochs > 1 or rl.mini_batches > 1
    if reuse or (rl.kl_coef and rl.kl_in_reward):
        data.add("old_logprobs", *roles.forward_rows(roles.trainers, data, "logprobs", "logprobs", micro, rows))
    if rl.kl_coef:
        data.add("ref_logprobs", *roles.reference_rows(data, micro, rows))
    values = None
    if roles.critic is not None:
        data.add("old_values", *roles.forward_rows(roles.critic, data, "values", "values", micro, rows))
        values = roles.fetch(data, "old_values", "values")
    reward_kl = None
    if rl.kl_coef and rl.kl_in_reward:
        reward_kl = kl_estimate(roles.fetch(data, "old_logprobs", "logprobs"),
                                roles.fetch(data, "ref_logprobs", "reference logprobs"), "k1")
    times["forward"], clock = time.perf_counter() - clock, time.perf_counter()

    # 4. advantages
    mask = (torch.arange(data.width) < torch.tensor(lengths).unsqueeze(1)).float()
    advantages, returns = compute_advantages(
        rl.algorithm, scores=scores, mask=mask, group_size=rl.samples_per_prompt, values=values, kl=reward_kl,
        kl_coef=rl.kl_coef if rl.kl_in_reward else 0.0, gamma=rl.gamma, lam=rl.lam,
        scale_rewards=rl.scale_rewards, whiten=rl.whiten_rewards)
    data.add("advantages", [0], [ray.put(advantages)])
    if returns is not None:
        data.add("returns", [0], [ray.put(returns)])

    # 5. update
    sizes = [p + r for p, r in zip(summary["prompt_lengths"], lengths)]
    policy_stats, critic_stats = update(roles, data, lengths, sizes, shape, micro,
                                        random.Random(config.seed * 7919 + step))
    times["train"], clock = time.perf_counter() - clock, time.perf_counter()

    # 6. sync (once the batches generating ahead have finished on the weights they started with)
    queue.settle()
    roles.before_sync()   # with rollout.sleep: the engines wake their weights
    roles.sync_weights(version=step + 1)
    times["sync"] = time.perf_counter() - clock

    metrics = {
        "reward/total_mean": statistics.fmean(total), "reward/total_std": statistics.pstdev(total),
        **{f"reward/{label}_mean": statistics.fmean(v) for label, v in per_source.items()},
        **{f"reward/{label}_std": statistics.pstdev(v) for label, v in per_source.items()},
        "response/length_mean": statistics.fmean(lengths),
        "response/truncated_fraction": summary["finished"].count(False) / rows,
        "rollout/staleness": batch.staleness,
        **{f"train/{k}": v for k, v in policy_stats.items()},
        **{f"critic/{k}": v for k, v in critic_stats.items()},
        **{f"time/{k}_s": v for k, v in times.items()},
        "time/step_s": sum(times.values()),
        "rollout/tokens_per_s": sum(lengths) / max(times["generate"], 1e-9),
    }
    return metrics


def update(roles: RlRoles, data: StepData, lengths: list[int], sizes: list[int], shape: BatchShape, micro: int,
           rng: random.Random) -> tuple[dict, dict]:
    """`update_epochs` passes over the step's rows in shuffled mini-batches; each mini-batch is
    one optimizer step of the policy (and critic). The loss is a token mean over the mini-batch.
    The controller sends each rank row numbers; the rank collates them from the object store."""
    world, rl = len(roles.trainers), roles.config.rlhf
    per_rank = shape.mini_batch // world
    fields = ("advantages", *(name for name in ("old_logprobs", "ref_logprobs") if name in data.refs),
              *((BEHAVIOUR,) if rl.max_staleness else ()))
    policy_layout, policy_blocks = data.for_workers(fields, share_prompts=shares_prompts(roles.config))
    if roles.critic is not None:
        critic_layout, critic_blocks = data.for_workers(("old_values", "returns"))
    policy, critic = defaultdict(list), defaultdict(list)
    order_key = micro_batch_order(lengths, sizes, rl.samples_per_prompt, policy_layout.share_prompts)
    for _ in range(rl.update_epochs):
        order = list(range(len(lengths)))
        rng.shuffle(order)
        for start in range(0, len(order), shape.mini_batch):
            chosen = order[start: start + shape.mini_batch]
            shards = []
            for rank in range(world):
                mine = sorted(chosen[rank * per_rank: (rank + 1) * per_rank], key=order_key)
                normaliser = max(sum(lengths[i] for i in mine), 1) / shape.accumulation
                shards.append(([mine[k: k + micro] for k in range(0, per_rank, micro)], normaliser))
            for stats in roles.trainers.call_each("train_rows", [(batches, normaliser, fields, policy_layout,
                                                                   *policy_blocks) for batches, normaliser in shards]):
                for key, value in stats.items():
                    policy[key].append(value)
            if roles.critic is not None:
                for stats in roles.critic.call_each("train_rows", [(batches, normaliser, ("old_values", "returns"),
                                                                    critic_layout, *critic_blocks)
                                                                   for batches, normaliser in shards]):
                    for key, value in stats.items():
                        critic[key].append(value)
    return ({k: statistics.fmean(v) for k, v in policy.items()}, {k: statistics.fmean(v) for k, v in critic.items()})


def micro_batch_order(lengths: list[int], sizes: list[int], group_size: int, share_prompts: bool):
    """The sort key of a rank's rows before they are cut into micro-batches: by length, so each
    micro-batch pads little (the loss is a sum: the order is free). Sharing prompts, a prompt's
    samples stay next to each other (its prompt then runs once per micro-batch) and the prompts
    go by their longest response, since every response pads to its micro-batch's longest."""
    longest = defaultdict(int)
    for row, length in enumerate(lengths):
        longest[row // group_size] = max(longest[row // group_size], length)

    def key(row: int) -> tuple:
        if share_prompts:
            return longest[row // group_size], sizes[row] - lengths[row], row // group_size, sizes[row]
        return (sizes[row],)

    return key


def evaluate(roles: RlRoles, config: RunConfig, eval_set: list[PromptExample], tokenizer) -> dict | None:
    """Greedy answers to the held-out prompts, scored by the run's rewards (see rayalign/evaluation)."""
    if not eval_set:
        return None
    about = {"model": config.model.name_or_path, "label": config.name, "data": config.data.eval,
             "data_label": data_label(config.data.eval) if config.data.eval else "held-out-fraction",
             "prompt": None, "variant": None}
    return evaluate_prompts(eval_set, roles.generate, roles.score, tokenizer,
                            Sampling(1, 0.0, config.rollout.max_new_tokens), about)
