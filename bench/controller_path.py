"""Controller overhead of one RL step at scale: the data path of `run_rlhf` at a baseline
commit (rollouts as Python lists through the driver) vs this tree's (rollouts as tensors in
the object store, fetched by the workers), in the same run.

The step: `--prompts` prompts x `--samples` samples x `--tokens` response tokens (default
1,024 x 8 x 1,024: 8,192 samples, 8.4M response tokens), GRPO, one mini-batch, no KL, LoRA
SmolLM2 (so the models load quickly), a cheap reward that reads every completion's text. Generation and training are replaced by fixed-cost
stand-ins (bench/controller_standins.py: ready-made samples, a training step that takes its
micro-batches and computes nothing) in every Ray worker, so what is left is the data path:
moving the samples, decoding and scoring them, advantages, sharding and collating, metrics.
Each side runs `run_rlhf` in its own subprocess on a private local Ray (`--cpus`) for
`--steps` steps; the first is set-up and is dropped. Per step it reports the wall seconds
(with and without the weight sync, which is not part of the data path),
the driver's CPU seconds (every thread of the driver process: its Python and Ray's own) and
the driver's peak resident memory during the measured steps, absolute and above what it
held when they began. The parent prints one JSON line; `*_ratio` is baseline / current.

Run:     .venv/bin/python bench/controller_path.py [--baseline efac84e --prompts 1024 --samples 8 --tokens 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def rss_gib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def watch(metrics: Path, marks: list, peaks: list, done: threading.Event) -> None:
    """At each step line: (CPU seconds, wall seconds, RSS); meanwhile the peak RSS since the last line."""
    lines, peak = 0, 0.0
    while not done.is_set():
        peak = max(peak, rss_gib())
        count = len(metrics.read_text().splitlines()) if metrics.exists() else 0
        if count > lines:
            lines = count
            marks.append((time.process_time(), time.perf_counter(), rss_gib()))
            peaks.append(peak)
            peak = rss_gib()
        time.sleep(0.02)


def child(args) -> dict:
    import ray

    from rayalign.config import load_config
    from rayalign.pipelines.rlhf import run_rlhf

    with tempfile.TemporaryDirectory(prefix="controller-path-") as folder:
        prompts = Path(folder) / "prompts.jsonl"
        prompts.write_text("".join(json.dumps({"prompt": f"Question {i}: say something about the number {i}."}) + "\n"
                                   for i in range(args.prompts)))
        config = load_config("rlhf_grpo", [
            "name=controller-path", f"output_dir={folder}", f"data.train={prompts}", "data.eval=null",
            "data.eval_fraction=0", f"data.max_length={args.tokens + 64}", "model.lora.r=8",
            f"rlhf.steps={args.steps}", f"rlhf.prompts_per_step={args.prompts}", f"rlhf.samples_per_prompt={args.samples}",
            "rlhf.kl_coef=0", "rlhf.eval_every=0", "rlhf.save_every=0", "rollout.engine=hf",
            "rewards=[{type: function, path: 'controller_standins:distinct_characters'}]",
            f"rollout.max_new_tokens={args.tokens}", f"train.micro_batch_size={args.micro}",
            "placement.num_workers=1", f"placement.cpus_per_worker={args.cpus}",
            "logging.progress=false", "logging.tensorboard=false"], method="rlhf")
        ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="ERROR",
                 runtime_env={"worker_process_setup_hook": "controller_standins.install",
                              "env_vars": {"BENCH_RESPONSE_TOKENS": str(args.tokens)}})
        marks, peaks, done = [], [], threading.Event()
        watcher = threading.Thread(target=watch, args=(config.run_dir / "metrics.jsonl", marks, peaks, done), daemon=True)
        watcher.start()
        run_rlhf(config)
        time.sleep(0.1)
        done.set()
        watcher.join()
        ray.shutdown()
        steps = [json.loads(line) for line in (config.run_dir / "metrics.jsonl").read_text().splitlines()]
    cpu = [b[0] - a[0] for a, b in zip(marks, marks[1:])]
    return {"step_s_median": statistics.median(s["time/step_s"] for s in steps[1:]),
            "step_without_sync_s_median": statistics.median(s["time/step_s"] - s["time/sync_s"] for s in steps[1:]),
            "driver_cpu_s_median": statistics.median(cpu),
            "driver_rss_peak_gib": max(peaks[1:]),
            "driver_rss_growth_gib": max(peaks[1:]) - marks[0][2],
            "tokens_trained": steps[-1].get("train/response_tokens")}


def run_side(tree: Path, args) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), str(HERE)])}
    command = [sys.executable, str(HERE / "controller_path.py"), "--child", *sys.argv[1:]]
    out = subprocess.run(command, env=env, cwd=tree, stdout=subprocess.PIPE, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="efac84e", help="the commit of the old data path")
    parser.add_argument("--prompts", type=int, default=1024)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--micro", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--only", choices=("baseline", "current"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)), flush=True)
        return
    results = {}
    with tempfile.TemporaryDirectory(prefix="controller-baseline-") as old:
        if args.only != "current":
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.baseline], stdout=subprocess.PIPE,
                                     check=True).stdout
            subprocess.run(["tar", "-x", "-C", old], input=archive, check=True)
            results["baseline"] = run_side(Path(old), args)
        if args.only != "baseline":
            results["current"] = run_side(ROOT, args)
    line = {"bench": "controller_path", "prompts": args.prompts, "samples": args.samples, "tokens": args.tokens,
            "baseline_commit": args.baseline, **results}
    if len(results) == 2:
        for key in ("step_s_median", "step_without_sync_s_median", "driver_cpu_s_median", "driver_rss_growth_gib"):
            line[f"{key}_ratio"] = results["baseline"][key] / max(results["current"][key], 1e-9)
    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
