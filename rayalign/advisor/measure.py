"""`rayalign advise --measure`: each question of the framework answered from the user's own case.

    knows      the prompting pipeline (the quickstart_prompt recipe's variants: plain, system
               prompts, a reminder, few-shot when --train has answers) on --eval: the variant
               chosen on dev prompts, its held-out mean
    data_easy  a survey of --train (advisor/data_survey.py)
    compute    the Ray cluster's devices and memory against the memory the recommended recipes
               need (sft_full for full fine-tuning, quickstart's LoRA), advisor/memory.py
    ai         generate: one round of self-instruct from --train's tasks by the teacher, its yield
               and (--rewards) judged quality; verify: the teacher labelling --labels' pairs in
               both orders, its agreement with the people's labels

Each measurement is a real run of the pipeline in `<out>/<name>` (default runs/advise), kept for
inspection, and remembered in `<out>/measurements.json` with the hashes of what it read: a rerun
with the same inputs (another threshold, say) reuses it, a changed input measures again.
The thresholds that turn figures into answers are in advisor/thresholds.py.
"""

from __future__ import annotations

import json
import shutil
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from rayalign.advisor import thresholds as rules
from rayalign.advisor.data_survey import survey
from rayalign.advisor.framework import Answer, Answers
from rayalign.advisor.memory import GiB, estimate
from rayalign.config import ConfigError, RewardSourceConfig, load_config
from rayalign.console import say
from rayalign.data.readers import resolve_data_path
from rayalign.lineage.data import hash_files
from rayalign.runs import write_atomic


@dataclass(frozen=True)
class Case:
    """What the user points --measure at."""
    model: str
    eval: str
    train: str | None = None
    labels: str | None = None
    rewards: tuple[RewardSourceConfig, ...] = ()
    teacher: str | None = None
    verify: str | None = None      # pkg.module:fn checking a synthetic item, for the generate measurement
    samples: int = 64              # dev prompts, labelled pairs, synthetic requests
    out: str = "runs/advise"
    address: str | None = None

    @property
    def judge(self) -> str:
        return self.teacher or self.model


def _fingerprint(inputs: dict) -> dict:
    """The inputs with every data file replaced by its content hash (a path alone may change content)."""
    return {key: (f"{value} sha256:{hash_files(resolve_data_path(value))}" if key in ("eval", "train", "labels")
                  and value else value) for key, value in inputs.items()}


class Memo:
    """measurements.json: figures per measurement, reused while their inputs are unchanged."""

    def __init__(self, out: Path):
        self.path = out / "measurements.json"
        self.saved = json.loads(self.path.read_text()) if self.path.exists() else {}

    def get(self, name: str, inputs: dict, measure: Callable[[], dict], folder: Path | None = None) -> dict:
        fingerprint = _fingerprint(inputs)
        saved = self.saved.get(name)
        if saved is not None and saved["inputs"] == fingerprint:
            say(f"[advise] {name}: measured before with the same inputs ({self.path})")
            return saved["figures"]
        if folder is not None and folder.exists():
            shutil.rmtree(folder)   # a run of other inputs: its partial files must not be resumed
        figures = measure()
        self.saved[name] = {"inputs": fingerprint, "figures": figures}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(self.saved, indent=1) + "\n")
        return figures


def _config(recipe: str, case: Case, name: str, overrides: list[str]):
    placement = [f"placement.address={case.address}"] if case.address else []
    return load_config(recipe, [f"output_dir={case.out}", f"name={name}", "logging.progress=false", *placement,
                                *overrides])


def measure_knowledge(case: Case) -> dict:
    from rayalign.pipelines.prompting import run_prompting

    config = _config("quickstart_prompt", case, "prompt", [f"model.name_or_path={case.model}",
                     f"data.eval={case.eval}", f"data.train={case.train or case.eval}",
                     f"prompt.dev_samples={case.samples}"])
    variants = config.prompt.variants if case.train else [v for v in config.prompt.variants if v.shots == 0]
    config = config.model_copy(update={"rewards": list(case.rewards),
                                       "prompt": config.prompt.model_copy(update={"variants": variants})})
    report = run_prompting(config)
    chosen = report["chosen"]
    select_by = config.prompt.select_by
    return {"chosen": chosen, "variants": len(variants), "select_by": select_by,
            "dev_prompts": report["dev"]["prompts"], "held_out_prompts": report["held_out"]["prompts"],
            "held_out_mean": report["held_out"]["scores"][select_by]["mean"], "run": str(config.run_dir)}


def measure_compute(case: Case) -> dict:
    import ray

    from rayalign.models.chain import start_model
    from rayalign.workers.cluster import connect

    full, lora = load_config("sft_full", [f"model.name_or_path={case.model}"]), load_config("quickstart")
    connect(case.address)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    memory = ray.get(ray.remote(num_gpus=1)(_gpu_memory).remote()) if gpus else None
    if memory is not None:
        device, devices, workers = "GPU", gpus, gpus
    else:   # no GPUs, or GPUs Ray was told of that torch cannot see: the nodes' memory holds the run
        nodes = [node for node in ray.nodes() if node["Alive"]]
        device, devices, workers = "node", len(nodes), full.placement.num_workers
        memory = min(node["Resources"].get("memory", 0) for node in nodes)
    sizes = estimate(start_model(case.model), dtype=full.model.dtype, micro_batch=full.train.micro_batch_size,
                     seq=full.data.max_length, zero_stage=full.train.zero_stage, workers=workers,
                     lora_r=lora.model.lora.r, lora_targets=lora.model.lora.target_modules,
                     checkpointing=full.model.gradient_checkpointing, gpu=bool(gpus))
    per_device = 1 if gpus else -(-workers // devices)   # the workers a CPU node holds share its memory
    return {"params": sizes["params"], "dtype": sizes["dtype"], "zero_stage": sizes["zero_stage"],
            "device": device, "devices": devices, "device_memory": memory,
            "full_per_device": sizes["full"] * per_device, "lora_per_device": sizes["lora"] * per_device,
            "workers": workers, "estimate_gib": {k: v / GiB for k, v in sizes.items() if isinstance(v, float)}}


def _gpu_memory() -> int | None:
    """The memory of the GPU Ray gave this task, or None when torch sees no GPU there."""
    import torch

    return torch.cuda.get_device_properties(0).total_memory if torch.cuda.is_available() else None


def measure_generate(case: Case) -> dict:
    from rayalign.pipelines.sdg_generate import run_generate

    verify = [f"sdg.filters.verify={case.verify}", "sdg.filters.verify_required=true"] if case.verify else \
        ["sdg.filters.verify=null", "sdg.filters.verify_required=false"]
    config = _config("sdg_quickstart", case, "sdg", [f"data.train={case.train}", f"teacher.model={case.judge}",
                     "sdg.max_rounds=1", f"sdg.requests_per_round={case.samples}", f"sdg.target={case.samples}",
                     "sdg.answers_per_task=2", *verify])
    filters = config.sdg.filters.model_copy(update={"quality": list(case.rewards), "quality_threshold": -1e9})
    config = config.model_copy(update={"sdg": config.sdg.model_copy(update={"filters": filters})})
    report = run_generate(config)
    about = report["dataset"]
    kept = [json.loads(line) for line in (config.run_dir / "items.jsonl").read_text().splitlines() if line]
    scores = [item["scores"]["quality"] for item in kept if item.get("scores", {}).get("quality") is not None]
    return {"candidates": about["candidates"], "kept": about["kept"],
            "yield": about["kept"] / about["candidates"] if about["candidates"] else 0.0,
            "quality": statistics.fmean(scores) if case.rewards and scores else None, "run": str(config.run_dir)}


def measure_verify(case: Case) -> dict:
    from rayalign.pipelines.rlaif_label import run_label

    config = _config("rlaif_label", case, "label", [f"data.train={case.labels}", f"labeler.model={case.judge}",
                     f"rlaif.max_pairs={case.samples}", "rlaif.orders=both"])
    labeling = run_label(config)["labeling"]
    hard = labeling["agreement_both_orders_hard"]
    return {"pairs": hard["pairs"], "agreement": hard["agreement"],
            "first_position_wins": labeling["first_position_wins"], "run": str(config.run_dir)}


def measure(case: Case, answers: Answers, limits: rules.Thresholds) -> tuple[Answers, dict]:
    """Every question the flags left open, answered from measurements; also the figures."""
    out = Path(case.out)
    memo, figures = Memo(out), {}
    common = {"model": case.model, "samples": case.samples}

    def wanted(key: str) -> bool:
        return answers.value(key) is None

    if wanted("knows"):
        say("[advise] knows: the best prompting baseline on the eval set")
        figures["knows"] = memo.get("knows", {**common, "eval": case.eval, "train": case.train,
                                              "rewards": [r.model_dump() for r in case.rewards]},
                                    lambda: measure_knowledge(case), out / "prompt")
        answers = answers.with_answer("knows", rules.knows(figures["knows"], limits))
    if wanted("data_easy"):
        if case.train is None:
            answers = answers.with_answer("data_easy", Answer("no", "measured", "no --train: no demonstrations "
                                                              "at hand"))
        else:
            figures["data_easy"] = survey(case.train)
            answers = answers.with_answer("data_easy", rules.data_easy(figures["data_easy"], limits))
    if wanted("compute"):
        figures["compute"] = measure_compute(case)
        answers = answers.with_answer("compute", rules.compute(figures["compute"], limits))
    if wanted("ai"):
        generate = verify = None
        if case.train is not None:
            say("[advise] ai: a small synthetic batch from the training tasks")
            generate = memo.get("generate", {**common, "train": case.train, "teacher": case.judge,
                                             "verify": case.verify, "rewards": [r.model_dump() for r in case.rewards]},
                                lambda: measure_generate(case), out / "sdg")
        if case.labels is not None:
            say("[advise] ai: the judge against the labelled pairs")
            verify = memo.get("verify", {**common, "labels": case.labels, "teacher": case.judge},
                              lambda: measure_verify(case), out / "label")
        figures.update({"generate": generate, "verify": verify})
        answer = rules.ai(generate, verify, limits)
        if answer is not None:
            answers = answers.with_answer("ai", answer)
    return answers, figures


def require_inputs(case: Case) -> None:
    for label, path in (("--eval", case.eval), ("--train", case.train), ("--labels", case.labels)):
        if path is not None:
            try:
                resolve_data_path(path)
            except ValueError as exc:
                raise ConfigError(f"{label}: {exc}") from None
