"""The advisor's memory estimate (rayalign/advisor/memory.py) against real training runs.

Runs the two recipes `rayalign advise` chooses between on compute, each for a few steps on a
local Ray: `sft_full` (every weight, ZeRO-2 over 2 workers) and `quickstart` (LoRA), on the
shipped SmolLM2-135M-Instruct, and reads the peak memory each worker reports
(`train/peak_memory_gib`: resident memory on a CPU, allocated memory on a GPU, the mean over
workers, the highest step). Prints one JSON line: per recipe the estimate per worker, the
measured peak and their ratio (> 1: the estimate is above the run).

Run:     .venv/bin/python bench/memory_estimate.py [--steps 4]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from rayalign.advisor.memory import GiB, estimate
from rayalign.cli import main
from rayalign.config import load_config
from rayalign.models.chain import start_model


def peak(run: Path) -> float:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]
    return max(row["train/peak_memory_gib"] for row in rows if "train/peak_memory_gib" in row)


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    out, figures = tempfile.mkdtemp(prefix="rayalign-memory-"), {}
    for recipe, kind in (("sft_full", "full"), ("quickstart", "lora")):
        overrides = [f"output_dir={out}", f"name={recipe}", f"train.max_steps={args.steps}", "train.save_every=0",
                     "train.eval_every=0", "data.eval=null", "train.log_every=1", "logging.progress=false"]
        if main(["sft", "--config", recipe, *overrides]):
            sys.exit(f"{recipe} failed")
        config = load_config(recipe, overrides)
        lora = config.model.lora or load_config("quickstart").model.lora
        sizes = estimate(start_model(config.model.name_or_path), dtype=config.model.dtype,
                         micro_batch=config.train.micro_batch_size, seq=config.data.max_length,
                         zero_stage=config.train.zero_stage, workers=config.placement.num_workers,
                         lora_r=lora.r, lora_targets=lora.target_modules,
                         checkpointing=config.model.gradient_checkpointing)
        measured = peak(Path(out) / recipe)
        figures[recipe] = {"estimate_gib": round(sizes[kind] / GiB, 3), "measured_peak_gib": round(measured, 3),
                           "ratio_estimate_over_measured": round(sizes[kind] / GiB / measured, 3),
                           "workers": config.placement.num_workers, "zero_stage": config.train.zero_stage}
    print(json.dumps({"bench": "memory_estimate", "steps": args.steps, **figures}))


if __name__ == "__main__":
    main_()
