"""What a run was, in words a reader who never saw its config understands: the method, the
base model, what trained, the data (with row counts), the key settings, the steps and time;
and its headline figures from report.json, as before -> after pairs and small tables.
"""

from __future__ import annotations

import time

from rayalign.reporting.run_folder import RunFolder, count_rows, is_eval_result

METHODS = {
    "sft": "supervised fine-tuning (SFT)",
    "rm": "reward model (Bradley-Terry on preference pairs)",
    "dpo": "direct preference optimisation (DPO)",
    "rlhf": "on-policy reinforcement learning",
    "prompt": "prompting: prompt variants chosen on dev data, no weights changed",
    "eval": "a model as it is, evaluated only (rayalign eval)",
    "rlaif_label": "AI preference labels (RLAIF): a labeler judges each pair in both orders",
    "rlaif_revise": "critique and revise (RLAIF): answers revised under a constitution's principles",
}
DATASET_METHODS = ("rlaif_label", "rlaif_revise")  # they write data, not a model
OFFLINE = ["train.epochs", "train.max_steps", "train.micro_batch_size", "train.gradient_accumulation_steps",
           "train.lr", "train.lr_scheduler", "train.warmup_steps", "train.weight_decay", "train.max_grad_norm",
           "train.zero_stage", "data.max_length"]
SETTINGS = {
    "sft": [*OFFLINE, "data.completion_only"],
    "rm": [*OFFLINE, "rm.margin", "rm.center_coef", "rm.soft_labels"],
    "dpo": [*OFFLINE, "dpo.loss", "dpo.beta", "dpo.label_smoothing"],
    "rlaif_label": ["labeler.model", "labeler.url", "labeler.served_model", "labeler.rubric", "labeler.constitution",
                    "labeler.examples", "labeler.rationale", "labeler.top_logprobs", "rlaif.orders",
                    "rlaif.disagreement", "rlaif.answers_per_prompt", "rlaif.max_pairs"],
    "rlaif_revise": ["model.name_or_path", "rlaif.constitution", "rlaif.rounds", "rlaif.max_pairs",
                     "rlaif.critique_max_tokens", "rlaif.revision_max_tokens", "rollout.engine"],
    "rlhf": ["rlhf.steps", "rlhf.prompts_per_step", "rlhf.samples_per_prompt", "rlhf.update_epochs",
             "rlhf.mini_batches", "rlhf.clip_range", "rlhf.kl_coef", "rlhf.kl_estimator", "rlhf.kl_in_reward",
             "rlhf.entropy_coef", "rlhf.missing_eos_penalty", "train.lr", "train.micro_batch_size",
             "rollout.engine", "rollout.temperature", "rollout.max_new_tokens", "rollout.num_workers",
             "data.max_length"],
}
PLACEMENT = ["placement.num_workers", "placement.cpus_per_worker", "placement.gpus_per_worker", "seed"]


def describe(run: RunFolder) -> dict:
    """Facts (label, text) about the run, and its key settings (dotted key, value)."""
    family, _, variant = run.method.partition("/")
    method = METHODS.get(family, family) + (f": {variant.upper()}" if variant else "")
    facts = [("method", method), ("base model", run.setting("model.name_or_path") or run.report.get("base")
                                  or (run.evals[0]["model"] if run.method == "eval" else None))]
    facts.append(("what trains", _what_trains(run)))
    if run.report.get("trainable"):
        facts.append(("trainable parameters", str(run.report["trainable"]).removeprefix("trainable parameters: ")))
    facts += [("training data", _data(run.setting("data.train"))), ("held-out data", _held_out(run))]
    dev = run.report.get("dev")
    if isinstance(dev, dict) and dev.get("data"):
        facts.append(("dev data (to choose the prompt)", f"{dev['data']} ({dev.get('prompts')} prompts)"))
    if run.prompt:
        facts.append(("chosen prompt variant", (run.prompt.get("variant") or {}).get("name")))
    if isinstance(run.setting("rewards"), list):
        facts += [("reward", _reward(source)) for source in run.setting("rewards")]
    facts += [("steps", _steps(run)), ("time", _span(run)), ("status", _status(run))]
    keys = SETTINGS.get(family) or _flatten(family, run.config.get(family))
    settings = [(key, run.setting(key)) for key in [*keys, *PLACEMENT] if run.setting(key) is not None]
    return {"facts": [(label, text) for label, text in facts if text not in (None, "")], "settings": settings}


def headline(report: dict) -> dict:
    """report.json's figures: before -> after pairs (top level, and flat dicts of held-out
    means unless full evaluation results say it better) and small tables of its other dicts
    of numbers (reward statistics, seconds per phase)."""
    pairs = []
    evaluated = any(is_eval_result(value) for value in report.values())  # flat dicts would repeat those results
    for key, before in report.items():
        if key.endswith("_before") and f"{key[:-7]}_after" in report:
            after = report[f"{key[:-7]}_after"]
            if _numeric(before) or _numeric(after):
                pairs.append((key[:-7].replace("_", " "), before, after))
            elif isinstance(before, dict) and isinstance(after, dict) and not evaluated:
                pairs += [(name.removeprefix("eval/"), before.get(name), after.get(name))
                          for name in dict.fromkeys([*before, *after])]
    tables = [(key.replace("_", " "), list(value.items())) for key, value in report.items()
              if isinstance(value, dict) and value and all(_numeric(v) for v in value.values())
              and not key.endswith(("_before", "_after"))]
    return {"pairs": pairs, "tables": tables}


def _what_trains(run: RunFolder) -> str | None:
    lora, freeze = run.setting("model.lora"), run.setting("model.freeze")
    if run.method == "prompt":
        return "nothing: the base model answers with a chosen prompt around the question"
    if run.method in DATASET_METHODS:
        return "nothing: this run writes a dataset"
    if isinstance(lora, dict):
        targets = ", ".join(lora.get("target_modules") or [])
        return f"a LoRA adapter (r={lora.get('r')}, alpha={lora.get('alpha')}) on {targets}"
    if isinstance(freeze, dict):
        parts = [f"{name} {value}" for name, value in freeze.items() if value]
        return "the full model except frozen parts" + (f" ({'; '.join(parts)})" if parts else "")
    return "all weights" if run.config else None


def _data(path: str | None) -> str | None:
    if not path:
        return None
    rows = count_rows(path)
    return path + (f" ({rows:,} rows)" if rows is not None else "")


def _held_out(run: RunFolder) -> str | None:
    if run.setting("data.eval"):
        return _data(run.setting("data.eval"))
    fraction = run.setting("data.eval_fraction")
    return f"{fraction:.0%} of the training data, set aside by seed" if fraction else None


def _reward(source: dict) -> str:
    label = source.get("name") or (source.get("path") or "").rpartition(":")[2] or source.get("type")
    target = source.get("path") or source.get("url") or ""
    return f"{label}: {source.get('type')} {target}, weight {source.get('weight', 1.0)}"


def _steps(run: RunFolder) -> str | None:
    if run.method == "prompt":  # its log counts prompt variants, not steps
        return None
    done = run.report.get("steps", max((record["step"] for record in run.metrics), default=None))
    planned = run.setting("rlhf.steps") if run.method.startswith("rlhf") else run.setting("train.max_steps")
    if done is None:
        return None
    return f"{done}" + (f" of {planned}" if planned and planned != done else "")


def _span(run: RunFolder) -> str | None:
    times = [record["time"] for record in run.metrics if isinstance(record.get("time"), (int, float))]
    if not times:
        return None
    start = time.strftime("%Y-%m-%d %H:%M", time.localtime(min(times)))
    seconds = max(times) - min(times)
    return f"logged from {start} for {int(seconds // 60)} min {seconds % 60:.0f} s"


def _status(run: RunFolder) -> str:
    if run.method == "eval":
        return "evaluated"
    if run.report:
        return "finished" + (" (final model written)" if (run.path / "final").is_dir() else "")
    return "incomplete: no report.json (the run stopped before its end, or is still running)"


def _flatten(prefix: str, section) -> list[str]:
    if not isinstance(section, dict):
        return []
    return [key for name, value in section.items()
            for key in (_flatten(f"{prefix}.{name}", value) if isinstance(value, dict) else [f"{prefix}.{name}"])]


def _numeric(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
