"""Fabricated run folders in the formats rayalign writes (config.yaml, metrics.jsonl,
report.json, eval/<data_label>.json, prompt.json), for the report tests."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

TASKS = ["addition", "capital", "lowercase"]
QUESTIONS = {"addition": "What is {i} + 1? Answer with just the number.",
             "capital": "Name the capital city of country #{i}. Answer with one word.",
             "lowercase": "Using only lowercase letters, describe object #{i}."}
PROMPTS = 12
SCRIPT_ANSWER = "<script>alert('x')</script> & more"


def interval(mean: float, n: int = PROMPTS) -> dict:
    return {"mean": mean, "low": round(mean - 0.08, 4), "high": round(mean + 0.08, 4), "n": n}


def eval_result(label: str, mean: float, data_label: str = "quickstart_eval", variant: str | None = None,
                answer=lambda index, task: f"answer {index}") -> dict:
    """An evaluation result as `rayalign eval` writes it: PROMPTS prompts over TASKS."""
    answers = []
    for index in range(PROMPTS):
        task = TASKS[index % len(TASKS)]
        score = 1.0 if (index * 7 % 10) / 10 < mean else 0.0
        answers.append({"index": index, "prompt": QUESTIONS[task].format(i=index), "task": task,
                        "completion": answer(index, task), "scores": {"total": score, "constraint_check": score},
                        "tokens": 3 + index % 4})
    by_task = {task: {"total": interval(min(1.0, mean + 0.1 * k), 4), "constraint_check": interval(mean, 4)}
               for k, task in enumerate(TASKS)}
    return {"model": label, "label": label, "data": "shipped:quickstart_eval.jsonl", "data_label": data_label,
            "prompt": None, "variant": variant, "sampling": {"samples": 1, "temperature": 0.0, "max_new_tokens": 48},
            "prompts": PROMPTS, "scores": {"total": interval(mean), "constraint_check": interval(mean)},
            "by_task": by_task, "pass_at_k": {}, "response_length": {"mean": 7.5, "median": 6, "low": 6.9, "high": 8.1},
            "answers": answers, "seconds": 12.3, "time": "2026-12-03T09:00:00"}


def write_run(folder: Path, config: dict, metrics: list[dict], report: dict | None,
              evals: list[dict] = (), prompt: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (folder / "metrics.jsonl").write_text("".join(json.dumps(record) + "\n" for record in metrics))
    if report is not None:
        (folder / "report.json").write_text(json.dumps(report, indent=2))
    for result in evals:
        (folder / "eval").mkdir(exist_ok=True)
        (folder / "eval" / f"{result['data_label']}.json").write_text(json.dumps(result))
    if prompt is not None:
        (folder / "prompt.json").write_text(json.dumps(prompt))
    return folder


def rl_run(parent: Path, name: str = "grpo", steps: int = 30) -> Path:
    config = {"method": "rlhf", "name": name, "model": {"name_or_path": "smollm2-135m-instruct",
              "lora": {"r": 16, "alpha": 32, "target_modules": ["q_proj", "v_proj"]}},
              "data": {"train": "shipped:quickstart_train.jsonl", "eval": "shipped:quickstart_eval.jsonl"},
              "rlhf": {"algorithm": "grpo", "steps": steps, "prompts_per_step": 8, "samples_per_prompt": 4,
                       "kl_coef": 0.05},
              "rewards": [{"type": "function", "path": "rayalign.rewards.quickstart:constraint_check", "weight": 1.0}]}
    metrics = [{"step": 0, "time": 1000.0, "eval/reward": 0.2, "eval/constraint_check": 0.2,
                "eval/task/capital": 0.1, "eval/response_length": 20.0}]
    for step in range(1, steps + 1):
        progress = step / steps
        metrics.append({
            "step": step, "time": 1000.0 + 10 * step, "reward/total_mean": 0.2 + 0.5 * progress,
            "reward/total_std": 0.3, "reward/constraint_check_mean": 0.2 + 0.5 * progress,
            "reward/constraint_check_std": 0.3, "response/length_mean": 20 - 15 * progress,
            "response/truncated_fraction": 0.1, "train/loss": 0.01, "train/kl": 0.01 * step,
            "train/entropy": 2.0 - progress, "train/clip_fraction": 0.05, "train/grad_norm": 0.5, "train/lr": 2e-4,
            "time/generate_s": 3.0, "time/score_s": 0.2, "time/forward_s": 1.0, "time/train_s": 4.0,
            "time/sync_s": 0.3, "time/step_s": 8.5, "rollout/tokens_per_s": 120.0, "prompts_seen": 8 * step})
    before = eval_result("smollm2-135m-instruct", 0.2, answer=lambda i, t: f"A long answer {i}")
    before["by_task"]["capital"]["total"] = {"mean": 0.0, "low": 2.8e-17, "high": 0.39, "n": 4}  # as real bounds can be
    report = {"method": "rlhf/grpo", "steps": steps,
              "eval_before": {"eval/reward": 0.2, "eval/task/capital": 0.1},
              "eval_after": {"eval/reward": 0.7, "eval/task/capital": 0.2},
              "held_out_before": before,
              "held_out_after": eval_result(name, 0.7, answer=lambda i, t: SCRIPT_ANSWER if i == 0 else f"ok {i}"),
              "median_seconds": {"generate": 3.0, "train": 4.0},
              "trainable": "trainable parameters: 1,843,200 of 136,358,208 (1.35%)", "final": str(parent / name / "final")}
    return write_run(parent / name, config, metrics, report)


def prompt_run(parent: Path, name: str = "prompting") -> Path:
    variants = {"plain": eval_result("smollm2-135m-instruct", 0.2, data_label="quickstart_dev", variant="plain"),
                "terse": eval_result("smollm2-135m-instruct", 0.4, data_label="quickstart_dev", variant="terse")}
    report = {"method": "prompt", "base": "smollm2-135m-instruct", "chosen": "terse",
              "dev": {"data": "dev.jsonl", "prompts": 12, "variants": variants},
              "held_out": eval_result("smollm2-135m-instruct", 0.35, variant="terse",
                                      answer=lambda i, t: f"prompted {i}")}
    prompt = {"base": "smollm2-135m-instruct", "variant": {
        "name": "terse", "system": "Answer in as few words as the question allows.", "template": "{prompt}",
        "examples": [{"prompt": "What is 1 + 1?", "answer": "2"}]}}
    config = {"method": "prompt", "name": name, "model": {"name_or_path": "smollm2-135m-instruct"}}
    return write_run(parent / name, config, [], report, prompt=prompt)


def sft_run(parent: Path, name: str = "sft", with_eval: bool = True) -> Path:
    config = {"method": "sft", "name": name, "model": {"name_or_path": "smollm2-135m-instruct"},
              "data": {"train": "shipped:quickstart_train.jsonl", "eval": "shipped:quickstart_eval.jsonl"},
              "train": {"lr": 1e-4, "max_steps": 4, "micro_batch_size": 4}}
    metrics = [{"step": 0, "time": 1.0, "eval/loss": 2.3, "eval/perplexity": 10.0, "eval/tokens": 900}]
    metrics += [{"step": s, "time": 1.0 + s, "train/loss": 2.3 - 0.2 * s, "train/lr": 1e-4, "samples_seen": 4 * s}
                for s in range(1, 5)]
    report = {"method": "sft", "steps": 4, "eval_loss_before": 2.3, "eval_loss_after": 1.5,
              "eval_perplexity_before": 10.0, "eval_perplexity_after": 4.5}
    evals = [eval_result(name, 0.5, answer=lambda i, t: f"tuned {i}")] if with_eval else []
    return write_run(parent / name, config, metrics, report, evals)
