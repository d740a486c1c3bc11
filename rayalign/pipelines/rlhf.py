"""On-policy RL (PPO, GRPO, RLOO, REINFORCE++) driven by a single controller.

Every step, for a batch of prompts:
    1. generate    n samples per prompt on the rollout workers (vLLM, or HF generate)
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

import torch
from tqdm import tqdm

from rayalign.algorithms.advantages import compute_advantages
from rayalign.algorithms.kl import kl_estimate
from rayalign.config import ConfigError, RunConfig
from rayalign.console import say, terminal
from rayalign.data.batching import sample_indices
from rayalign.data.prompts import PromptExample, load_prompts
from rayalign.data.rollouts import Rollout, collate_rollouts, pad_rows, sequence_tokens
from rayalign.evaluation.evaluate import Sampling, brief, data_label, flat_metrics
from rayalign.evaluation.evaluate import evaluate as evaluate_prompts
from rayalign.models.chain import resolve_start
from rayalign.models.loading import load_tokenizer
from rayalign.pipelines.offline import split_held_out
from rayalign.pipelines.rl_roles import BatchShape, RlRoles, batch_shape
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
        while step < rl.steps:
            prompts = [train_set[i] for i in sample_indices(len(train_set), config.seed, seen, rl.prompts_per_step)]
            metrics = rl_step(roles, config, shape, prompts, tokenizer, step)
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
                staging = run.staging_checkpoint(step)
                roles.trainers.call("save_checkpoint", str(staging))
                if roles.critic is not None:
                    roles.critic.call("save_checkpoint", str(staging / "critic"))
                run.commit_checkpoint(staging, step, {"samples_seen": seen, "eval_before": before})
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


def rl_step(roles: RlRoles, config: RunConfig, shape: BatchShape, prompts: list[PromptExample], tokenizer,
            step: int) -> dict:
    """One step of generate -> score -> forward -> advantages -> update -> sync; returns its metrics."""
    rl, micro, pad = config.rlhf, config.train.micro_batch_size, tokenizer.pad_token_id
    times: dict[str, float] = {}
    clock = time.perf_counter()

    # 1. generate
    groups = roles.generate([p.prompt_ids for p in prompts], rl.samples_per_prompt)
    samples = [sample for group in groups for sample in group]
    owners = [p for p in prompts for _ in range(rl.samples_per_prompt)]
    completions = tokenizer.batch_decode([s.response_ids for s in samples], skip_special_tokens=True)
    times["generate"], clock = time.perf_counter() - clock, time.perf_counter()

    # 2. score
    total, per_source = roles.score([o.prompt for o in owners], completions, [o.metadata for o in owners])
    scores = torch.tensor(total, dtype=torch.float32)
    if rl.missing_eos_penalty is not None:
        scores += torch.tensor([0.0 if s.finished else rl.missing_eos_penalty for s in samples])
    if rl.reward_clip is not None:
        scores = scores.clamp(-rl.reward_clip, rl.reward_clip)
    times["score"], clock = time.perf_counter() - clock, time.perf_counter()

    # 3. forward passes the update needs
    rollouts = [Rollout(s) for s in samples]
    width = max(max(len(s.response_ids) for s in samples), 1)
    mask = pad_rows([[1.0] * len(s.response_ids) for s in samples], width)
    reuse = rl.update_epochs > 1 or rl.mini_batches > 1
    if reuse or (rl.kl_coef and rl.kl_in_reward):
        _attach(rollouts, "old_logprobs", roles.forward(roles.trainers, rollouts, "logprobs", "logprobs", pad, micro))
    if rl.kl_coef:
        _attach(rollouts, "ref_logprobs", roles.reference_logprobs(rollouts, pad, micro))
    values = None
    if roles.critic is not None:
        _attach(rollouts, "old_values", roles.forward(roles.critic, rollouts, "values", "values", pad, micro))
        values = _field(rollouts, "old_values", width)
    reward_kl = None
    if rl.kl_coef and rl.kl_in_reward:
        reward_kl = kl_estimate(_field(rollouts, "old_logprobs", width), _field(rollouts, "ref_logprobs", width), "k1")
    times["forward"], clock = time.perf_counter() - clock, time.perf_counter()

    # 4. advantages
    advantages, returns = compute_advantages(
        rl.algorithm, scores=scores, mask=mask, group_size=rl.samples_per_prompt, values=values, kl=reward_kl,
        kl_coef=rl.kl_coef if rl.kl_in_reward else 0.0, gamma=rl.gamma, lam=rl.lam,
        scale_rewards=rl.scale_rewards, whiten=rl.whiten_rewards)
    for index, rollout in enumerate(rollouts):
        length = len(rollout.sample.response_ids)
        rollout.fields["advantages"] = advantages[index, :length].tolist()
        if returns is not None:
            rollout.fields["returns"] = returns[index, :length].tolist()

    # 5. update
    policy_stats, critic_stats = update(roles, rollouts, shape, micro, pad, random.Random(config.seed * 7919 + step))
    times["train"], clock = time.perf_counter() - clock, time.perf_counter()

    # 6. sync
    roles.before_sync()   # with rollout.sleep: the engines wake their weights
    roles.sync_weights(version=step + 1)
    times["sync"] = time.perf_counter() - clock

    lengths = [len(s.response_ids) for s in samples]
    metrics = {
        "reward/total_mean": statistics.fmean(total), "reward/total_std": statistics.pstdev(total),
        **{f"reward/{label}_mean": statistics.fmean(v) for label, v in per_source.items()},
        **{f"reward/{label}_std": statistics.pstdev(v) for label, v in per_source.items()},
        "response/length_mean": statistics.fmean(lengths),
        "response/truncated_fraction": sum(not s.finished for s in samples) / len(samples),
        **{f"train/{k}": v for k, v in policy_stats.items()},
        **{f"critic/{k}": v for k, v in critic_stats.items()},
        **{f"time/{k}_s": v for k, v in times.items()},
        "time/step_s": sum(times.values()),
        "rollout/tokens_per_s": sum(lengths) / max(times["generate"], 1e-9),
    }
    return metrics


def update(roles: RlRoles, rollouts: list[Rollout], shape: BatchShape, micro: int, pad: int,
           rng: random.Random) -> tuple[dict, dict]:
    """`update_epochs` passes over the rollouts in shuffled mini-batches; each mini-batch is
    one optimizer step of the policy (and critic). The loss is a token mean over the mini-batch."""
    world = len(roles.trainers)
    per_rank = shape.mini_batch // world
    policy, critic = defaultdict(list), defaultdict(list)
    for _ in range(roles.config.rlhf.update_epochs):
        order = list(range(len(rollouts)))
        rng.shuffle(order)
        for start in range(0, len(order), shape.mini_batch):
            chosen = [rollouts[i] for i in order[start: start + shape.mini_batch]]
            shards = []
            for rank in range(world):
                # By length, so each micro-batch pads little (the loss is a sum: order is free).
                part = sorted(chosen[rank * per_rank: (rank + 1) * per_rank], key=sequence_tokens)
                normaliser = max(sum(len(r.sample.response_ids) for r in part), 1) / shape.accumulation
                shards.append((([collate_rollouts(part[k: k + micro], pad, normaliser)
                                 for k in range(0, per_rank, micro)]),))
            for stats in roles.trainers.call_each("train_step", shards):
                for key, value in stats.items():
                    policy[key].append(value)
            if roles.critic is not None:
                for stats in roles.critic.call_each("train_step", shards):
                    for key, value in stats.items():
                        critic[key].append(value)
    return ({k: statistics.fmean(v) for k, v in policy.items()}, {k: statistics.fmean(v) for k, v in critic.items()})


def evaluate(roles: RlRoles, config: RunConfig, eval_set: list[PromptExample], tokenizer) -> dict | None:
    """Greedy answers to the held-out prompts, scored by the run's rewards (see rayalign/evaluation)."""
    if not eval_set:
        return None
    about = {"model": config.model.name_or_path, "label": config.name, "data": config.data.eval,
             "data_label": data_label(config.data.eval) if config.data.eval else "held-out-fraction",
             "prompt": None, "variant": None}
    return evaluate_prompts(eval_set, roles.generate, roles.score, tokenizer,
                            Sampling(1, 0.0, config.rollout.max_new_tokens), about)


def _attach(rollouts: list[Rollout], name: str, rows: list[list[float]]) -> None:
    for rollout, row in zip(rollouts, rows):
        rollout.fields[name] = row


def _field(rollouts: list[Rollout], name: str, width: int) -> torch.Tensor:
    return pad_rows([r.fields[name] for r in rollouts], width)
