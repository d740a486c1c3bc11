"""Seconds per reward-model optimizer step: rayalign's DeepSpeed engine vs TRL's RewardTrainer.

Both sides train a scalar reward head on SmolLM2-135M-Instruct with LoRA (r=16, alpha=32,
q/k/v/o, dropout 0; the `score` head trains in full on both, as peft's SEQ_CLS task does),
with a Bradley-Terry loss, AdamW at a constant lr of 5e-4, grad-norm clipping at 1.0, fp32,
no gradient checkpointing, on the same consecutive slices of
`shipped:quickstart_prefs_train.jsonl`, B pairs (2B sequences) per optimizer step.

- rayalign: in-process, no Ray: a 1-process gloo group, `build_trainable(head="reward")`,
  `TrainingEngine` (ZeRO stage `--zero-stage`, default 2 as in the shipped recipe), timing
  `engine.train_step([batch], objective)`; batches are collated before the clock starts.
- rayalign-ray: the recipe's layout: `--workers` data-parallel Trainer actors on a local Ray
  (threads/workers threads each, batch/workers pairs each), timed per `train_step` call,
  Ray's scheduling and transfer of the collated batches included.
- TRL: `RewardTrainer` with `peft_config`, `train_sampling_strategy="sequential"` (no shuffle),
  timed from `on_step_begin` to `on_step_end` of a `TrainerCallback` (the batch is already
  fetched and collated; logging comes after). TRL's own default optimizer is kept.

Each side runs in its own subprocess (the script calls itself with `--only`) with the same
torch thread count. The first `--warmup` steps are dropped; medians are over `--steps`.
The parent prints one JSON line; `ratio_trl_over_rayalign` > 1 means rayalign is faster.

Run:     .venv/bin/python bench/rm_step.py [--steps 10 --warmup 2 --batch 8 --threads 2]
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
import time

MODEL = "smollm2-135m-instruct"
DATA = "shipped:quickstart_prefs_train.jsonl"
MAX_LENGTH = 256
LR = 5e-4
LORA_R, LORA_ALPHA, TARGETS = 16, 32, ["q_proj", "k_proj", "v_proj", "o_proj"]
TRL_INSTALL = ".venv/bin/pip install --no-deps trl==1.16.0"
RESULT = '{"side"'  # a child's result line starts with this


def side_result(side: str, args, times: list[float], tokens: list[int], trainable: int) -> dict:
    """Drop the warm-up steps; the rest are the timed ones."""
    timed, timed_tokens = times[args.warmup:], tokens[args.warmup:]
    return {"side": side, "s_per_step_median": statistics.median(timed), "step_s": timed,
            "tokens_per_batch": statistics.mean(timed_tokens), "trainable_params": trainable,
            "threads": args.threads}


def run_rayalign(args) -> dict:
    import torch

    from rayalign.config import LoraConfig, ModelConfig, TrainConfig
    from rayalign.data.preference import collate_pairs, load_pairs
    from rayalign.engines.distributed import close_process_group, init_process_group
    from rayalign.engines.training import TrainingEngine
    from rayalign.models.adapt import build_trainable, count_parameters
    from rayalign.models.loading import load_tokenizer
    from rayalign.workers.objectives import make_objective

    total = args.warmup + args.steps
    torch.manual_seed(0)
    init_process_group(0, 1, "127.0.0.1", backend="auto")
    try:
        tokenizer = load_tokenizer(MODEL)
        pairs = load_pairs(DATA, tokenizer, MAX_LENGTH)
        if len(pairs) < total * args.batch:
            sys.exit(f"{DATA} has {len(pairs)} pairs; {total} steps of {args.batch} need {total * args.batch}")
        batches = [collate_pairs(pairs[i * args.batch:(i + 1) * args.batch], tokenizer.pad_token_id)
                   for i in range(total)]
        lora = LoraConfig(r=LORA_R, alpha=LORA_ALPHA, dropout=0.0, target_modules=TARGETS)
        model, counts = build_trainable(ModelConfig(name_or_path=MODEL, lora=lora), head="reward")
        print(f"[rayalign] {counts}", file=sys.stderr, flush=True)
        train = TrainConfig(micro_batch_size=args.batch, gradient_accumulation_steps=1, lr=LR,
                            zero_stage=args.zero_stage, lr_scheduler="constant", warmup_steps=0, max_grad_norm=1.0)
        engine = TrainingEngine(model, train, total_steps=total, world_size=1)
        objective = make_objective("rm", {"margin": False, "center_coef": 0.0})
        torch.set_num_threads(args.threads)  # again: nothing above may have changed it
        times = []
        for step, batch in enumerate(batches):
            start = time.perf_counter()
            stats = engine.train_step([batch], objective)
            times.append(time.perf_counter() - start)
            print(f"[rayalign] step {step}: {times[-1]:.2f}s loss {stats['loss']:.4f}", file=sys.stderr, flush=True)
        trainable = count_parameters(engine.module)[0]
    finally:
        close_process_group()
    tokens = [int(batch["attention_mask"].sum()) for batch in batches]
    return side_result("rayalign", args, times, tokens, trainable)


def run_rayalign_ray(args) -> dict:
    """rayalign as the shipped recipe runs it: data-parallel Trainer actors on a local Ray, each
    with threads/workers threads and batch/workers pairs of every step (one DeepSpeed group)."""
    from rayalign.config import load_config
    from rayalign.data.preference import collate_pairs, load_pairs, pair_tokens
    from rayalign.models.loading import load_tokenizer
    from rayalign.pipelines.offline import OfflineMethod, summarise_pairs, trainer_group
    from rayalign.workers.cluster import connect

    total, workers = args.warmup + args.steps, args.workers
    share = args.batch // workers
    tokenizer = load_tokenizer(MODEL)
    pairs = load_pairs(DATA, tokenizer, MAX_LENGTH)[: total * args.batch]
    config = load_config("reward_model", [
        f"train.micro_batch_size={share}", "train.gradient_accumulation_steps=1", f"train.lr={LR}",
        "train.lr_scheduler=constant", "train.warmup_steps=0", "train.max_grad_norm=1.0",
        f"train.zero_stage={args.zero_stage}", f"placement.num_workers={workers}",
        f"placement.cpus_per_worker={args.threads // workers}", "rm.margin=false", "rm.center_coef=0.0"])
    method = OfflineMethod("rm", {"margin": False, "center_coef": 0.0}, "reward",
                           lambda chunk: collate_pairs(chunk, tokenizer.pad_token_id), summarise_pairs, pair_tokens)
    connect(num_cpus=args.threads)
    trainers, counts = trainer_group(config, method, total, role="RewardTrainer")
    print(f"[rayalign-ray] {counts}", file=sys.stderr, flush=True)
    times = []
    with trainers:
        for step in range(total):
            chunk = pairs[step * args.batch:(step + 1) * args.batch]
            shards = [[method.collate(chunk[r * share:(r + 1) * share])] for r in range(workers)]
            start = time.perf_counter()
            stats = trainers.call_each("train_step", [(shard,) for shard in shards])
            times.append(time.perf_counter() - start)
            loss = sum(s["loss"] for s in stats) / workers
            print(f"[rayalign-ray] step {step}: {times[-1]:.2f}s loss {loss:.4f}", file=sys.stderr, flush=True)
        trainers.call("shutdown")
    tokens = [sum(pair_tokens(p) for p in pairs[i * args.batch:(i + 1) * args.batch]) for i in range(total)]
    return side_result("rayalign-ray", args, times, tokens, counts)


def run_trl(args) -> dict:
    import tempfile

    import datasets
    import peft
    import torch
    import trl
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback

    from rayalign.data.readers import read_rows
    from rayalign.models.registry import resolve_model

    total = args.warmup + args.steps
    folder = resolve_model(MODEL)
    rows = [row.fields for row in read_rows(DATA)][: total * args.batch]
    dataset = datasets.Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows])
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []

        def on_train_begin(self, *_, **__):
            torch.set_num_threads(args.threads)  # again: nothing in Trainer's setup may have changed it

        def on_step_begin(self, *_, **__):
            self.start = time.perf_counter()

        def on_step_end(self, *_, **__):
            self.times.append(time.perf_counter() - self.start)
            print(f"[trl] step {len(self.times) - 1}: {self.times[-1]:.2f}s", file=sys.stderr, flush=True)

    timer = StepTimer()
    with tempfile.TemporaryDirectory(prefix="rm_step_trl-") as output_dir:
        config = trl.RewardConfig(
            output_dir=output_dir, per_device_train_batch_size=args.batch, gradient_accumulation_steps=1,
            learning_rate=LR, max_steps=total, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
            max_grad_norm=1.0, max_length=MAX_LENGTH, logging_steps=1, report_to=[], save_strategy="no",
            use_cpu=True, dataloader_drop_last=True, seed=0, bf16=False,
            gradient_checkpointing=False,  # TRL defaults to True; rayalign does not checkpoint
            train_sampling_strategy="sequential", disable_tqdm=True,
        )
        lora = peft.LoraConfig(task_type="SEQ_CLS", r=LORA_R, lora_alpha=LORA_ALPHA, target_modules=TARGETS,
                               lora_dropout=0.0)
        trainer = trl.RewardTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                                    peft_config=lora, callbacks=[timer])
        prepared = trainer.train_dataset  # tokenised by TRL; pairs over max_length are dropped, not truncated
        if len(prepared) != len(rows):
            sys.exit(f"TRL dropped {len(rows) - len(prepared)} pairs longer than {MAX_LENGTH} tokens; "
                     "the two sides would not see the same data")
        trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        print(f"[trl] trainable parameters: {trainable:,}", file=sys.stderr, flush=True)
        trainer.train()
    lengths = [len(c) + len(r) for c, r in zip(prepared["chosen_ids"], prepared["rejected_ids"])]
    tokens = [sum(lengths[i * args.batch:(i + 1) * args.batch]) for i in range(total)]
    return side_result("trl", args, timer.times, tokens, trainable)


def run_child(side: str, args) -> dict:
    """Run one side in a fresh interpreter; its chatter goes to stderr, its result line is parsed."""
    command = [sys.executable, os.path.abspath(__file__), "--only", side, "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--batch", str(args.batch), "--threads", str(args.threads),
               "--zero-stage", str(args.zero_stage), "--workers", str(args.workers)]
    result = None
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as child:
        for line in child.stdout:
            if line.startswith(RESULT):
                result = json.loads(line)
            else:
                sys.stderr.write(line)
    if child.returncode != 0 or result is None:
        sys.exit(f"the {side} side failed (exit status {child.returncode})")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    parser.add_argument("--batch", type=int, default=8, help="preference pairs per optimizer step")
    parser.add_argument("--threads", type=int, default=2, help="torch threads on each side")
    parser.add_argument("--zero-stage", type=int, default=2, choices=(0, 2), help="rayalign's ZeRO stage")
    parser.add_argument("--workers", type=int, default=2, help="data-parallel Ray workers of the rayalign-ray side")
    parser.add_argument("--only", choices=SIDES, help="run one side in this process")
    args = parser.parse_args()
    if min(args.steps, args.batch, args.threads) < 1 or args.warmup < 0:
        parser.error("--steps, --batch and --threads must be positive, --warmup not negative")
    if args.batch % args.workers or args.threads % args.workers:
        parser.error("--batch and --threads must divide evenly among --workers")

    if args.only in ("trl", None) and importlib.util.find_spec("trl") is None:
        sys.exit(f"TRL is not installed; install it (its dependencies are already there) with:\n  {TRL_INSTALL}")
    if args.only:
        os.environ.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))  # before torch
        for name in ("HF_HUB_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):  # local model; no pings from TRL
            os.environ.setdefault(name, "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        os.environ["RAY_ADDRESS"] = "local"  # a private Ray, never a cluster already on this machine
        result = SIDES[args.only](args)
        print(json.dumps(result), flush=True)
        return

    ours, ray_dp, theirs = (run_child(side, args) for side in ("rayalign", "rayalign-ray", "trl"))
    trl_median = theirs["s_per_step_median"]
    print(json.dumps({
        "bench": "rm_step", "model": MODEL, "lora_r": LORA_R, "batch_pairs": args.batch, "steps": args.steps,
        "rayalign_s_per_step_median": round(ours["s_per_step_median"], 4),
        "rayalign_ray_s_per_step_median": round(ray_dp["s_per_step_median"], 4),
        "trl_s_per_step_median": round(trl_median, 4),
        "ratio_trl_over_rayalign": round(trl_median / ours["s_per_step_median"], 3),
        "ratio_trl_over_rayalign_ray": round(trl_median / ray_dp["s_per_step_median"], 3),
        "rayalign_tokens_per_batch": ours["tokens_per_batch"], "trl_tokens_per_batch": theirs["tokens_per_batch"],
        "threads": args.threads, "ray_workers": args.workers, "zero_stage": args.zero_stage,
    }), flush=True)


SIDES = {"rayalign": run_rayalign, "rayalign-ray": run_rayalign_ray, "trl": run_trl}

if __name__ == "__main__":
    main()
