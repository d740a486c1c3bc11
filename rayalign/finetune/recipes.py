"""An OpenAI fine-tuning job as a rayalign run: which command, which recipe, which overrides.

    supervised     -> `rayalign sft`   (LoRA by default; `"rayalign": {"full_weights": true}` in
                                        the job body trains every weight)
    dpo            -> `rayalign dpo`   (beta -> dpo.beta)
    reinforcement  -> `rayalign rlhf`  (the job's grader is the one reward source, type: grader)

The operator picks each method's recipe and its overrides (FineTuneSettings.recipes and
.overrides); the job's own hyperparameters are applied last: `n_epochs` -> train.epochs (and no
step cap; for reinforcement, epochs of prompts -> rlhf.steps), `batch_size` -> the micro-batch
(reinforcement: prompts per step), `learning_rate_multiplier` -> the recipe's learning rate
times it, `eval_interval` -> the eval period (reinforcement). "auto" keeps the recipe's value.
Everything is checked here, when the job is created, so a bad job is a 400, not a failed run.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from pydantic import TypeAdapter, ValidationError

from rayalign.config import ConfigError, load_config
from rayalign.config.graders import Grader, walk
from rayalign.finetune.errors import ServiceError

COMMANDS = {"supervised": "sft", "dpo": "dpo", "reinforcement": "rlhf"}
HYPERPARAMETERS = {"supervised": {"n_epochs", "batch_size", "learning_rate_multiplier"},
                   "dpo": {"n_epochs", "batch_size", "learning_rate_multiplier", "beta"},
                   "reinforcement": {"n_epochs", "batch_size", "learning_rate_multiplier", "eval_interval",
                                     "eval_samples", "compute_multiplier", "reasoning_effort"}}
EXTENSIONS = {"full_weights"}


@dataclass(frozen=True)
class JobRun:
    command: str            # the rayalign command
    recipe: str
    overrides: list[str]


def check_method(method: dict, extension: dict | None, python_graders: bool = False) -> dict:
    """OpenAI's `method` object, checked (type, hyperparameters, grader); the stored form.
    `python_graders`: whether the operator lets tenants' python graders run (isolated)."""
    if not isinstance(method, dict) or method.get("type") not in COMMANDS:
        raise ServiceError(f"method.type must be one of {', '.join(COMMANDS)}", "invalid_method", "method.type")
    kind = method["type"]
    settings = method.get(kind) or {}
    if not isinstance(settings, dict):
        raise ServiceError(f"method.{kind} must be an object", "invalid_method", f"method.{kind}")
    hyper = settings.get("hyperparameters") or {}
    unknown = sorted(set(hyper) - HYPERPARAMETERS[kind])
    if unknown:
        raise ServiceError(f"{unknown[0]} is not a {kind} hyperparameter ({', '.join(sorted(HYPERPARAMETERS[kind]))})",
                           "invalid_hyperparameter", f"method.{kind}.hyperparameters.{unknown[0]}")
    for name, value in hyper.items():
        if value != "auto" and name != "reasoning_effort" and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            raise ServiceError(f"{name} must be a positive number or 'auto', got {value!r}", "invalid_hyperparameter",
                               f"method.{kind}.hyperparameters.{name}")
    if kind == "reinforcement":
        if "grader" not in settings:
            raise ServiceError("a reinforcement job needs method.reinforcement.grader", "invalid_grader",
                               "method.reinforcement.grader")
        try:
            grader = TypeAdapter(Grader).validate_python(settings["grader"])
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(p) for p in problem["loc"])
            raise ServiceError(f"grader{'.' + where if where else ''}: {problem['msg']}", "invalid_grader",
                               "method.reinforcement.grader") from None
        if not python_graders and any(g.type == "python" for g in walk(grader)):
            raise ServiceError("python graders are off on this service (they run tenants' code; the operator "
                               "turns them on with finetune.python_graders); use string_check, text_similarity, "
                               "score_model or multi", "python_graders_disabled", "method.reinforcement.grader")
    unknown = sorted(set(extension or {}) - EXTENSIONS)
    if unknown:
        raise ServiceError(f"rayalign.{unknown[0]} is not a rayalign extension ({', '.join(sorted(EXTENSIONS))})",
                           "invalid_extension", f"rayalign.{unknown[0]}")
    if (extension or {}).get("full_weights") and kind != "supervised":
        raise ServiceError("full_weights is for supervised jobs", "invalid_extension", "rayalign.full_weights")
    return {**method, **({"rayalign": extension} if extension else {})}


def job_run(method: dict, *, model: str, train: str, validation: str | None, run_name: str, output_dir: str,
            seed: int, recipes: dict, operator: dict, score_model_url: str | None, rows: int) -> JobRun:
    """The command, recipe and overrides of a checked job; `rows`: training rows (for epochs)."""
    kind = method["type"]
    settings = method.get(kind) or {}
    hyper = {k: v for k, v in (settings.get("hyperparameters") or {}).items() if v != "auto"}
    recipe = recipes[kind]
    overrides = [*operator.get(kind, []), f"output_dir={output_dir}", f"name={run_name}",
                 f"model.name_or_path={model}", f"data.train={train}",
                 f"data.eval={validation}" if validation else "data.eval=null", f"seed={seed}",
                 "logging.progress=false"]
    if (method.get("rayalign") or {}).get("full_weights"):
        overrides.append("model.lora=null")
    if kind == "reinforcement":
        grader = settings["grader"]
        source = {"type": "grader", "name": grader.get("name") or "grader", "grader": grader}
        if score_model_url:
            source["url"] = score_model_url
        overrides.append("rewards=" + json.dumps([source]))
    base = _load(recipe, overrides, COMMANDS[kind])
    if "learning_rate_multiplier" in hyper:
        overrides.append(f"train.lr={base.train.lr * hyper['learning_rate_multiplier']:.6g}")
    if kind == "reinforcement":
        per_step = int(hyper.get("batch_size", base.rlhf.prompts_per_step))
        overrides.append(f"rlhf.prompts_per_step={per_step}")
        if "n_epochs" in hyper:
            overrides.append(f"rlhf.steps={max(1, math.ceil(hyper['n_epochs'] * rows / per_step))}")
        if "eval_interval" in hyper:
            overrides.append(f"rlhf.eval_every={int(hyper['eval_interval'])}")
    else:
        if "batch_size" in hyper:
            overrides.append(f"train.micro_batch_size={int(hyper['batch_size'])}")
        if "n_epochs" in hyper:
            overrides += [f"train.epochs={hyper['n_epochs']}", "train.max_steps=null"]
        if kind == "dpo" and "beta" in hyper:
            overrides.append(f"dpo.beta={hyper['beta']}")
    _load(recipe, overrides, COMMANDS[kind])
    return JobRun(COMMANDS[kind], recipe, overrides)


def _load(recipe: str, overrides: list[str], command: str):
    try:
        return load_config(recipe, overrides, method=command)
    except (ConfigError, ValueError) as exc:
        raise ServiceError(f"the job's settings do not make a valid {command} run: {exc}", "invalid_hyperparameter",
                           "method") from None
