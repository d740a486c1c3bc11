"""Seconds per weight sync on CPU: the collective sync (`rollout.sync: collective`) vs the object store.

SmolLM2-135M-Instruct (the shipped model), trained in fp32 by one DeepSpeed trainer (ZeRO-2),
synced to one vLLM rollout worker in bf16, colocated on one bundle of a private local Ray, as
`RlRoles` places them in an RL run. Two jobs:

- full:        every weight (134.5M parameters, 269 MB in bf16);
- lora_merged: LoRA r=16 on q/k/v/o folded into the base weights (the CPU default), so only
               the 120 targeted projections travel.

Each job starts its roles once with `rollout.sync: collective` (which joins the weight-sync
group) and then alternates syncs of both kinds on the same actors: a collective sync, then an
object-store sync (the same roles, their transport switched to object_store for that call), and
so on, `--syncs` times after `--warmup` pairs that are dropped. A sync is timed as
`RlRoles.sync_weights` times it in a run (from the controller's call until every engine has
loaded the weights). Medians are printed as one JSON line; `speedup` = object-store seconds /
collective seconds (> 1: the collective is faster).

Run:     .venv/bin/python bench/weight_sync.py [--syncs 5 --warmup 1 --threads 2 --bucket-mb 256]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile

MODEL = "smollm2-135m-instruct"
REWARD = "rayalign.rewards.quickstart:constraint_check"
LORA = {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}


def job_config(args, output_dir: str, lora: bool):
    from rayalign.config import RunConfig

    return RunConfig.model_validate({
        "method": "rlhf", "name": "weight_sync", "output_dir": output_dir,
        "data": {"train": "unused", "max_length": 256},
        "model": {"name_or_path": MODEL, "dtype": "float32", "lora": LORA if lora else None},
        "rlhf": {"prompts_per_step": 2, "samples_per_prompt": 2},
        "rollout": {"engine": "vllm", "dtype": "bfloat16", "sync": "collective", "sync_bucket_mb": args.bucket_mb,
                    "threads": args.threads},
        "rewards": [{"type": "function", "path": REWARD}],
        "train": {"micro_batch_size": 4, "zero_stage": 2},
        "placement": {"num_workers": 1, "cpus_per_worker": args.threads, "colocate": True, "timeout_s": 600},
    })


def measure(args, lora: bool) -> dict:
    """Median seconds of each kind of sync on one set of roles."""
    from rayalign.pipelines.rl_roles import RlRoles, batch_shape

    with tempfile.TemporaryDirectory(prefix="rayalign-bench-sync-") as output_dir:
        config = job_config(args, output_dir, lora)
        roles = RlRoles(config, batch_shape(config))
        times = {"collective": [], "object_store": []}
        try:
            for version in range(1, args.warmup + args.syncs + 1):
                for kind in ("collective", "object_store"):
                    roles.sync_transport = kind
                    seconds = roles.sync_weights(version=2 * version + (kind == "object_store"))
                    if version > args.warmup:
                        times[kind].append(seconds)
            mode = roles.sync_mode
        finally:
            roles.close()
    medians = {f"{kind}_s": round(statistics.median(values), 4) for kind, values in times.items()}
    every = {f"{kind}_every_s": [round(value, 3) for value in values] for kind, values in times.items()}
    return {"mode": mode, **medians, "speedup": round(medians["object_store_s"] / medians["collective_s"], 2), **every}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--syncs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bucket-mb", type=float, default=256.0)
    args = parser.parse_args()

    import ray

    ray.init(address="local", num_cpus=args.threads, include_dashboard=False, logging_level="WARNING")
    try:
        results = {"full": measure(args, lora=False), "lora_merged": measure(args, lora=True)}
    finally:
        ray.shutdown()
    print(json.dumps({"model": MODEL, "engine_dtype": "bfloat16", "bucket_mb": args.bucket_mb, "syncs": args.syncs,
                      **results}), flush=True)


if __name__ == "__main__":
    main()
