"""Seconds per GRPO step on CPU: rayalign's RL engine (`run_rlhf`) vs TRL's GRPOTrainer.

The same job on both sides: SmolLM2-135M-Instruct with LoRA (r=16, alpha=32, q/k/v/o, dropout 0),
training in the `--precision` (below), 8 prompts x 4 samples per step, at most 32 new tokens at
temperature 1 (top-p 1, no top-k), GRPO advantages (group mean and std), clip 0.2, no KL (beta 0), a token-mean loss over
the 32 samples, AdamW at a constant lr of 1e-4, grad-norm clipping at 1.0, one optimizer step per
batch, the reward `rayalign.rewards.quickstart:constraint_check`, and the same prompts in the same
order: the shipped quickstart prompts in the order `run_rlhf` samples them (TRL reads them
unshuffled, in that order).

- rayalign: the shipped `rlhf_grpo` recipe with the job's overrides (no eval set, no checkpoints
  but the last, no progress bar or tensorboard, output in a temporary folder), run by `run_rlhf`
  in this process on a private local Ray of `--threads` CPUs: as the recipe places it, one policy
  trainer and one vLLM rollout worker (bf16) colocated on one bundle, each using all the threads,
  in turn, and the recipe's micro-batches (16 rows) with `rlhf.share_prompts` (each prompt's
  forward runs once for its 4 samples). Per-step times are the phases `run_rlhf` writes to
  metrics.jsonl (generate, score, forward, train, sync; `time/step_s` is their sum).
- rayalign_unshared: the same with `rlhf.share_prompts=false` (every row runs its prompt and
  response together); `share_prompts_speedup` is its step over rayalign's.
- TRL: `GRPOTrainer` with `peft_config`, HF generate (`use_vllm=False`) on the fp32 policy;
  `per_device_train_batch_size=32`, `num_generations=4`, `gradient_accumulation_steps=1`, so
  `steps_per_generation=1` and `generation_batch_size=32`: each optimizer step generates for and
  trains on 8 prompts x 4 samples once (`num_iterations=1`). Gradient checkpointing off (TRL's
  GRPO default is on; rayalign does not checkpoint). A step is timed from `on_step_begin` to
  `on_step_end` of a `TrainerCallback` (generation, reward, loss, backward and optimizer step);
  its generation is timed around `_generate_single_turn`, which also gives the tokens generated
  (each completion up to and including its EOS, as rayalign counts them).

Precision (`--precision`): `fp32` on both sides; `bf16` is rayalign's pure-bf16 training
(model.dtype=bfloat16: DeepSpeed's bf16 path) against TRL's `bf16=True`; `autocast_bf16` is
rayalign's autocast with float32 master weights (model.dtype=float32, train.autocast=bfloat16),
which is what TRL's `bf16=True` does too.

The update's achieved TFLOP/s (`update_tflops_median`): its FLOPs over its seconds (rayalign's
`train` phase; TRL's step minus its generation, i.e. loss, backward, optimizer step and the reward,
which costs milliseconds). FLOPs by the LoRA formula of bench/gpu_update.py (`update_flops`): the
frozen base runs forward and back-propagates to its inputs, 4 x body parameters x tokens, plus the
vocabulary head on response tokens and the attention term, plus 6 x adapter parameters x tokens,
counting each step's real prompt and response tokens (not padding), and each prompt once per
sample, or once in all where rayalign shares prompts (the FLOPs it does, not the job's: rayalign's
figure is then lower for the same speed of matmuls, and its `train` seconds are what compare).

A third side, `rayalign_async`, is the same rayalign job asynchronous and one step off-policy
(`rlhf.max_staleness=1`) on a split placement: the trainer and the vLLM rollout worker on
bundles of their own, half the threads each, generating the next batch while the trainer
updates (`time/step_s` is then the controller's whole step, the wait for the batch included).
Its `overlap_speedup` is rayalign's on-policy step over its own.

Each side runs in its own subprocess (the script calls itself with `--only`); `--sides` picks
which run (default: all four). The first
`--warmup` steps of each side are dropped; medians are over the `--steps` steps after them.
The parent prints one JSON line; `speedup` (TRL seconds per step / rayalign's) > 1 means
rayalign is faster. Tokens per second are generated tokens over the whole step (`tokens_per_s`)
and over the generation phase alone (`rollout_tokens_per_s`).

Run:     .venv/bin/python bench/rl_step.py [--steps 5 --warmup 1 --threads 2 --sides rayalign,trl]
Needs:   .venv/bin/pip install --no-deps trl==1.16.0
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

MODEL, RECIPE, DATA = "smollm2-135m-instruct", "rlhf_grpo", "shipped:quickstart_train.jsonl"
PROMPTS, SAMPLES, NEW_TOKENS, LR = 8, 4, 32, 1e-4
REWARD = "rayalign.rewards.quickstart:constraint_check"
PHASES = ("generate", "score", "forward", "train", "sync")
PRECISIONS = {"fp32": ("model.dtype=float32", "train.autocast=null"),
              "bf16": ("model.dtype=bfloat16", "train.autocast=null"),
              "autocast_bf16": ("model.dtype=float32", "train.autocast=bfloat16")}
TRL_INSTALL = ".venv/bin/pip install --no-deps trl==1.16.0"
# The ratios of the JSON line: one side's seconds per step over another's, when both ran.
RATIOS = {"speedup": ("trl", "rayalign"), "overlap_speedup": ("rayalign", "rayalign_async"),
          "share_prompts_speedup": ("rayalign_unshared", "rayalign"), "speedup_unshared": ("trl", "rayalign_unshared"),
          "speedup_async": ("trl", "rayalign_async")}


def overlap_overrides(threads: int) -> tuple[str, ...]:
    """The rayalign_async side: one step off-policy, trainer and rollout worker on bundles of their own."""
    return ("rlhf.max_staleness=1", "placement.colocate=false", f"placement.cpus_per_worker={threads}",
            f"rollout.cpus_per_worker={threads}", f"rollout.threads={threads}")


def job_config(args, output_dir: str, overlap: bool = False, share: bool = True):
    """The rayalign run of this benchmark; the TRL side takes its model, LoRA and prompts from it too."""
    from rayalign.config import load_config

    config = load_config(RECIPE, [
        "name=rl_step", f"output_dir={output_dir}", f"data.train={DATA}", f"model.name_or_path={MODEL}",
        "model.lora.r=16", "model.lora.alpha=32", "model.lora.dropout=0.0",
        "model.lora.target_modules=[q_proj,k_proj,v_proj,o_proj]", f"rlhf.steps={args.warmup + args.steps}",
        f"rlhf.prompts_per_step={PROMPTS}", f"rlhf.samples_per_prompt={SAMPLES}", "rlhf.algorithm=grpo",
        "rlhf.kl_coef=0", "rlhf.update_epochs=1", "rlhf.mini_batches=1", "rlhf.clip_range=0.2",
        "rlhf.eval_every=0", "rlhf.save_every=0", "data.eval=null", "data.eval_fraction=0",
        f"rollout.max_new_tokens={NEW_TOKENS}", "rollout.temperature=1.0", "rollout.top_p=1.0",
        f"rollout.threads={args.threads}", f"placement.cpus_per_worker={args.threads}",
        f"train.lr={LR}", "train.lr_scheduler=constant", "train.warmup_steps=0", "train.weight_decay=0.0",
        "train.max_grad_norm=1.0", *PRECISIONS[args.precision], "model.gradient_checkpointing=false",
        "logging.progress=false", "logging.tensorboard=false",
        *(overlap_overrides(max(args.threads // 2, 1)) if overlap else ()), f"rlhf.share_prompts={str(share).lower()}",
    ], method="rlhf")
    check_job(config)
    return config


def check_job(config) -> None:
    """The reward comes from the recipe: it must be the job's one reward function."""
    rewards = [(source.type, source.path, source.weight) for source in config.rewards]
    if rewards != [("function", REWARD, 1.0)]:
        sys.exit(f"recipe {RECIPE} has the rewards {rewards}; this benchmark needs just {REWARD}")


def step_prompts(config, total: int) -> list[list]:
    """The prompts of each step as run_rlhf draws them (TRL is given them in this order too)."""
    from rayalign.data.batching import sample_indices
    from rayalign.models.loading import load_tokenizer
    from rayalign.pipelines.rlhf import load_prompt_sets

    train_set, _ = load_prompt_sets(config, load_tokenizer(config.model.name_or_path))
    return [[train_set[i] for i in sample_indices(len(train_set), config.seed, step * PROMPTS, PROMPTS)]
            for step in range(total)]


def update_tflop_counter(config):
    """tflop(prompt_tokens, response_tokens) of one update of this job's LoRA model (gpu_update's formula)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from gpu_update import update_flops
    from rayalign.models.adapt import apply_lora
    from rayalign.models.registry import resolve_model

    model_config = AutoConfig.from_pretrained(resolve_model(config.model.name_or_path))
    with torch.device("meta"):  # shapes only
        model = apply_lora(AutoModelForCausalLM.from_config(model_config), config.model.lora)
    rows = PROMPTS * SAMPLES

    def tflop(prompt_tokens: float, response_tokens: float, prompt_runs: int = SAMPLES) -> float:
        """`prompt_tokens` counts each prompt once; the update runs it `prompt_runs` times (once per
        sample, or once in all with rlhf.share_prompts). The attention span is the mean row's either way."""
        span = (SAMPLES * prompt_tokens + response_tokens) / rows
        tokens = prompt_runs * prompt_tokens + response_tokens
        return update_flops(model, model_config, round(tokens), round(response_tokens), span, lora=True) / 1e12

    return tflop


def median_of(steps: list[dict], key: str) -> float:
    return statistics.median(step[key] for step in steps)


def step_records(path, skip: int = 0) -> list[dict]:
    """The step records of a run's metrics.jsonl (those with step times), from the `skip`-th on."""
    if not path.is_file():
        return []
    with open(path) as records:
        return [row for row in map(json.loads, records) if "time/step_s" in row][skip:]


def show_steps(path, done: threading.Event) -> None:
    """Print each step of a running `run_rlhf` as it lands in metrics.jsonl."""
    shown = 0
    while True:
        finished = done.wait(2.0)
        for row in step_records(path, shown):
            shown += 1
            print(f"[rayalign] step {row['step'] - 1}: {row['time/step_s']:.2f}s ("
                  + ", ".join(f"{phase} {row[f'time/{phase}_s']:.2f}s" for phase in PHASES)
                  + f"); {row['response/length_mean'] * PROMPTS * SAMPLES:.0f} tokens, "
                  f"reward {row['reward/total_mean']:.3f}", file=sys.stderr, flush=True)
        if finished:
            return


def run_rayalign(args, overlap: bool = False, share: bool = True) -> dict:
    import ray

    from rayalign.pipelines.rlhf import run_rlhf

    with tempfile.TemporaryDirectory(prefix="rl_step-") as output_dir:
        config = job_config(args, output_dir, overlap, share)
        metrics, done = config.run_dir / "metrics.jsonl", threading.Event()
        watcher = threading.Thread(target=show_steps, args=(metrics, done), daemon=True)
        # A private Ray with the job's CPUs, never a cluster already on this machine;
        # run_rlhf finds it initialised and uses it.
        ray.init(address="local", num_cpus=args.threads, include_dashboard=False, logging_level="WARNING")
        watcher.start()
        try:
            report = run_rlhf(config)
        finally:
            ray.shutdown()
            done.set()
            watcher.join()
        rows = step_records(metrics)
    if len(rows) != args.warmup + args.steps:
        sys.exit(f"[rayalign] metrics.jsonl has {len(rows)} steps, expected {args.warmup + args.steps}")
    tflop, prompts = update_tflop_counter(config), step_prompts(config, len(rows))
    steps = []
    for row, step_prompt in zip(rows, prompts):
        tokens = row["response/length_mean"] * PROMPTS * SAMPLES
        prompt_tokens = sum(len(p.prompt_ids) for p in step_prompt)
        steps.append({"step_s": row["time/step_s"], "tokens": tokens, "tokens_per_s": tokens / row["time/step_s"],
                      "update_tflops": tflop(prompt_tokens, tokens, 1 if share else SAMPLES) / row["time/train_s"],
                      "rollout_tokens_per_s": row["rollout/tokens_per_s"], "reward": row["reward/total_mean"],
                      **{f"{phase}_s": row[f"time/{phase}_s"] for phase in PHASES}})
    timed = steps[args.warmup:]
    total = sum(step["step_s"] for step in timed)
    return {"steps": timed, "trainable": report["trainable"],
            "phase_s_median": {phase: round(median_of(timed, f"{phase}_s"), 4) for phase in PHASES},
            "phase_share": {phase: round(sum(step[f"{phase}_s"] for step in timed) / total, 4) for phase in PHASES}}


def reward_for_trl(prompts, completions, check, **kwargs):
    """`constraint_check` as TRL calls it: conversational completions (one assistant message
    each) and the `check` column, which the dataset holds as JSON (its specs differ in type)."""
    from rayalign.rewards.quickstart import constraint_check

    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return constraint_check(prompts, texts, [json.loads(spec) for spec in check], **kwargs)


def run_trl(args) -> dict:
    import datasets
    import peft
    import torch
    import trl
    from transformers import AutoModelForCausalLM, TrainerCallback

    from rayalign.models.loading import load_tokenizer
    from rayalign.models.registry import resolve_model

    total = args.warmup + args.steps
    with tempfile.TemporaryDirectory(prefix="rl_step_trl-") as output_dir:
        config = job_config(args, output_dir)
        tokenizer = load_tokenizer(config.model.name_or_path)
        prompts = step_prompts(config, total)
        tflop = update_tflop_counter(config)
        order = [example for step_prompt in prompts for example in step_prompt]
        dataset = datasets.Dataset.from_list([{"prompt": example.prompt, "check": json.dumps(example.metadata["check"])}
                                              for example in order])
        torch.manual_seed(config.seed)
        model = AutoModelForCausalLM.from_pretrained(resolve_model(config.model.name_or_path), dtype=torch.float32)

        class StepTimer(TrainerCallback):
            def __init__(self):
                self.steps: list[dict] = []
                self.generate: list[tuple[float, int]] = []  # (seconds, tokens) of each generation call

            def on_train_begin(self, *_, **__):
                torch.set_num_threads(args.threads)  # again: nothing in Trainer's setup may have changed it

            def on_step_begin(self, *_, **__):
                self.generate.clear()
                self.start = time.perf_counter()

            def on_step_end(self, *_, **__):
                step_s = time.perf_counter() - self.start
                generate_s, tokens = (sum(column) for column in zip(*self.generate))
                prompt_tokens = sum(len(p.prompt_ids) for p in prompts[len(self.steps)])
                self.steps.append({"step_s": step_s, "generate_s": generate_s, "tokens": tokens,
                                   "update_tflops": tflop(prompt_tokens, tokens) / (step_s - generate_s),
                                   "tokens_per_s": tokens / step_s, "rollout_tokens_per_s": tokens / generate_s})
                print(f"[trl] step {len(self.steps) - 1}: {step_s:.2f}s, generate {generate_s:.2f}s; {tokens} tokens",
                      file=sys.stderr, flush=True)

            def on_log(self, _args, _state, _control, logs=None, **__):
                if logs and self.steps and "reward" in logs:
                    self.steps[-1]["reward"] = logs["reward"]

        timer = StepTimer()
        lora = config.model.lora
        grpo = trl.GRPOConfig(
            output_dir=output_dir, per_device_train_batch_size=PROMPTS * SAMPLES, gradient_accumulation_steps=1,
            num_generations=SAMPLES, num_iterations=1, max_completion_length=NEW_TOKENS, temperature=1.0,
            top_p=1.0, top_k=0, use_vllm=False, beta=0.0, epsilon=0.2, scale_rewards="group", loss_type="dapo",
            learning_rate=LR, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
            max_steps=total, shuffle_dataset=False, seed=config.seed, bf16=args.precision != "fp32", use_cpu=True,
            gradient_checkpointing=False, logging_steps=1, report_to=[], save_strategy="no", disable_tqdm=True,
        )
        assert grpo.generation_batch_size == PROMPTS * SAMPLES and grpo.steps_per_generation == 1, \
            "one optimizer step must generate for and train on exactly 8 prompts x 4 samples"
        trainer = trl.GRPOTrainer(
            model=model, reward_funcs=reward_for_trl, args=grpo, train_dataset=dataset, processing_class=tokenizer,
            peft_config=peft.LoraConfig(task_type="CAUSAL_LM", r=lora.r, lora_alpha=lora.alpha,
                                        lora_dropout=lora.dropout, target_modules=lora.target_modules),
            callbacks=[timer])
        generate = trainer._generate_single_turn

        def timed_generate(*a, **k):
            start = time.perf_counter()
            completion_ids, logprobs = generate(*a, **k)
            timer.generate.append((time.perf_counter() - start, sum(len(ids) for ids in completion_ids)))
            return completion_ids, logprobs

        trainer._generate_single_turn = timed_generate
        trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        print(f"[trl] trainable parameters: {trainable:,}", file=sys.stderr, flush=True)
        trainer.train()
    if len(timer.steps) != total:
        sys.exit(f"[trl] timed {len(timer.steps)} steps, expected {total}")
    timed = timer.steps[args.warmup:]
    total_s = sum(step["step_s"] for step in timed)
    generate_s = sum(step["generate_s"] for step in timed)
    return {"steps": timed, "trainable": trainable,
            "phase_s_median": {"generate": round(median_of(timed, "generate_s"), 4)},
            "phase_share": {"generate": round(generate_s / total_s, 4), "rest": round(1 - generate_s / total_s, 4)}}


def summary(result: dict) -> dict:
    steps = result["steps"]
    return {"step_s_median": round(median_of(steps, "step_s"), 4),
            "tokens_per_s_median": round(median_of(steps, "tokens_per_s"), 2),
            "rollout_tokens_per_s_median": round(median_of(steps, "rollout_tokens_per_s"), 2),
            "update_tflops_median": round(median_of(steps, "update_tflops"), 4),
            "tokens_per_step_mean": round(statistics.fmean(step["tokens"] for step in steps), 1),
            "phase_s_median": result["phase_s_median"], "phase_share": result["phase_share"],
            "reward_mean": round(statistics.fmean(step.get("reward", float("nan")) for step in steps), 4),
            "steps": [round(step["step_s"], 3) for step in steps]}


def child(side: str) -> dict:
    """Run one side in a fresh interpreter with this command's options; its output goes to
    stderr, and it writes its result to a file."""
    with tempfile.NamedTemporaryFile("r", prefix=f"rl_step-{side}-", suffix=".json") as result:
        command = [sys.executable, os.path.abspath(__file__), *sys.argv[1:], "--only", side, "--result", result.name]
        status = subprocess.run(command, stdout=sys.stderr).returncode
        text = result.read()
    if status != 0 or not text:
        sys.exit(f"the {side} side failed (exit status {status})")
    return json.loads(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5, help="timed GRPO steps")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before them")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads on each side (and rayalign's Ray CPUs)")
    parser.add_argument("--only", choices=tuple(SIDES), help="run one side only")
    parser.add_argument("--sides", default=",".join(SIDES), help="the sides to run, comma-separated (default: all)")
    parser.add_argument("--precision", choices=tuple(PRECISIONS), default="fp32",
                        help="training precision (see above; TRL: bf16 autocast for both bf16 choices)")
    parser.add_argument("--result", help=argparse.SUPPRESS)  # set by the parent: where a side writes its result
    args = parser.parse_args()
    if min(args.steps, args.threads) < 1 or args.warmup < 0:
        parser.error("--steps and --threads must be positive, --warmup not negative")
    if args.only in ("trl", None) and importlib.util.find_spec("trl") is None:
        sys.exit(f"TRL is not installed; install it (its dependencies are already there) with:\n  {TRL_INSTALL}")

    if args.result:  # a side, in the interpreter the parent started for it
        result = SIDES[args.only](args)
        with open(args.result, "w") as out:
            json.dump(result, out)
        return

    # For both sides, set before torch starts: threads, and no network (the model is local).
    os.environ.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads), HF_HUB_OFFLINE="1",
                      HF_HUB_DISABLE_TELEMETRY="1", TOKENIZERS_PARALLELISM="false")
    sides = [args.only] if args.only else args.sides.split(",")
    if not set(sides) <= set(SIDES):
        parser.error(f"--sides: choose from {', '.join(SIDES)}")
    results = {side: summary(child(side)) for side in sides}
    line = {"bench": "rl_step",
            "job": {"model": MODEL, "recipe": RECIPE, "lora_r": 16, "prompts": PROMPTS, "samples": SAMPLES,
                    "max_new_tokens": NEW_TOKENS, "lr": LR, "warmup": args.warmup, "steps": args.steps,
                    "threads": args.threads, "precision": args.precision},
            **results}
    for name, (over, under) in RATIOS.items():
        if {over, under} <= set(results):
            line[name] = round(results[over]["step_s_median"] / results[under]["step_s_median"], 3)
    print(json.dumps(line), flush=True)


SIDES = {"rayalign": run_rayalign, "rayalign_unshared": lambda args: run_rayalign(args, share=False),
         "rayalign_async": lambda args: run_rayalign(args, overlap=True), "trl": run_trl}

if __name__ == "__main__":
    main()
