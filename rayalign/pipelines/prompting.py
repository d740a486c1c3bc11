"""Prompting as a method: the zero-cost reference every tuned model must beat.

    1. split: the dev prompts (a file, or a seeded sample of data.train) and the few-shot pool
       (data.train or prompt.examples, without the dev prompts); data.eval is held out
    2. build every variant: system prompt, template, few-shot examples (fixed, or drawn by seed)
    3. score every variant on the dev prompts (greedy answers, the recipe's rewards)
    4. choose the variant with the best dev mean; the held-out split plays no part in the choice
    5. report the chosen variant on data.eval, and leave a run folder `rayalign serve` serves as
       `<base>:<run>` (prompt.json: the variant and its base model)
"""

from __future__ import annotations

import json
import random

from rayalign.config import ConfigError, PromptVariantConfig, RunConfig
from rayalign.console import say
from rayalign.data.prompting import PROMPT_FILE, PromptVariant, prompt_run_record
from rayalign.data.prompts import PromptExample, load_prompts, with_variant
from rayalign.evaluation.evaluate import Sampling, brief, data_label, evaluate, question_text
from rayalign.models.chain import start_model
from rayalign.models.loading import load_tokenizer
from rayalign.pipelines.evaluate import EvalWorkers, default_rewards
from rayalign.runs import RunDir, write_atomic
from rayalign.workers.cluster import connect


def split_dev(train: list[PromptExample], dev_file: list[PromptExample] | None, samples: int,
              seed: int) -> tuple[list[PromptExample], list[PromptExample]]:
    """(dev prompts, the rest of data.train for few-shot examples)."""
    if dev_file is not None:
        return dev_file, train
    order = list(range(len(train)))
    random.Random(f"dev:{seed}").shuffle(order)
    dev = set(order[:samples])
    return [train[i] for i in sorted(dev)], [e for i, e in enumerate(train) if i not in dev]


def build_variant(spec: PromptVariantConfig, pool: list[PromptExample], taken: set[str]) -> PromptVariant:
    """The variant with its few-shot examples: pool prompts with a reference answer, never one
    that is also asked in dev or held out (`taken`)."""
    usable = [e for e in pool if e.metadata.get("reference") and question_text(e.prompt) not in taken]
    if spec.shots > len(usable):
        raise ConfigError(f"prompt variant {spec.name!r} wants {spec.shots} shots; the pool has {len(usable)} "
                          "examples with answers that are not dev or held-out prompts")
    chosen = usable[:spec.shots] if spec.shots_seed is None else random.Random(spec.shots_seed).sample(usable,
                                                                                                        spec.shots)
    examples = [{"prompt": question_text(e.prompt), "answer": e.metadata["reference"]} for e in chosen]
    return PromptVariant(spec.name, spec.system, spec.template, examples)


def choose(dev_results: dict[str, dict], select_by: str) -> str:
    """The variant with the best dev mean of `select_by`; on a tie, the one listed first (simpler)."""
    missing = [name for name, result in dev_results.items() if select_by not in result["scores"]]
    if missing:
        known = sorted(next(iter(dev_results.values()))["scores"])
        raise ConfigError(f"prompt.select_by {select_by!r} is not a score of this run (scores: {known})")
    best = max(result["scores"][select_by]["mean"] for result in dev_results.values())
    return next(name for name, result in dev_results.items() if result["scores"][select_by]["mean"] == best)


def run_prompting(config: RunConfig) -> dict:
    if not config.data.eval:
        raise ConfigError("prompting reports the chosen prompt on data.eval: set data.eval (the held-out split)")
    run = RunDir(config, tensorboard=False)
    spec, rollout = config.prompt, config.rollout
    folder = start_model(config.model.name_or_path, config.model.parent)
    tokenizer = load_tokenizer(folder)
    limit = config.data.max_length - rollout.max_new_tokens

    # 1. split
    train = load_prompts(config.data.train, tokenizer, limit)
    dev, pool = split_dev(train, load_prompts(spec.dev, tokenizer, limit) if spec.dev else None, spec.dev_samples,
                          config.seed)
    held_out = load_prompts(config.data.eval, tokenizer, limit)
    if spec.examples:
        pool = load_prompts(spec.examples, tokenizer, limit)
    taken = {question_text(e.prompt) for e in dev + held_out}

    # 2. variants
    variants = {v.name: build_variant(v, pool, taken) for v in spec.variants}
    rewards = config.rewards or default_rewards({"dev": dev, "held_out": held_out})
    sampling = Sampling(1, 0.0, rollout.max_new_tokens)
    say(f"[prompt] {len(variants)} prompt variants, scored on {len(dev)} dev prompts; the best is reported on "
        f"{len(held_out)} held-out prompts ({data_label(config.data.eval)})")

    connect(config.placement.address)
    workers = EvalWorkers(folder, rollout.model_copy(update={"max_model_len": config.data.max_length}), rewards,
                          config.seed, config.placement.timeout_s)
    try:
        def score(variant: PromptVariant, examples: list[PromptExample], data: str) -> dict:
            about = {"model": config.model.name_or_path, "label": config.name, "data": data,
                     "data_label": data_label(data), "prompt": str(run.path), "variant": variant.name}
            return evaluate(with_variant(examples, variant, tokenizer, limit), workers.generate, workers.score,
                            tokenizer, sampling, about)

        # 3. every variant on dev
        dev_results = {}
        for step, (name, variant) in enumerate(variants.items(), start=1):
            dev_results[name] = score(variant, dev, spec.dev or f"{config.data.train} (dev sample)")
            run.log(step, {"variant": name, **{f"dev/{label}": value["mean"]
                                               for label, value in dev_results[name]["scores"].items()}})
            say(f"[prompt] {name}: dev {brief(dev_results[name])}")

        # 4. choose on dev only
        chosen = choose(dev_results, spec.select_by)

        # 5. the chosen variant on held-out prompts
        held = score(variants[chosen], held_out, config.data.eval)
    finally:
        workers.close()
    say(f"[prompt] chosen on dev: {chosen}; held-out {data_label(config.data.eval)}: {brief(held)}")

    write_atomic(run.path / PROMPT_FILE, prompt_run_record(variants[chosen], config.model.name_or_path))
    write_atomic(run.path / "eval" / f"{data_label(config.data.eval)}.json", json.dumps(held, indent=1) + "\n")
    report = {
        "method": "prompt",
        "base": config.model.name_or_path,
        "chosen": chosen,
        "dev": {"data": spec.dev or config.data.train, "prompts": len(dev),
                "variants": {name: {k: v for k, v in result.items() if k != "answers"}
                             for name, result in dev_results.items()}},
        "held_out": held,
        "final": str(run.path / PROMPT_FILE),
    }
    run.write_report(report)
    run.close()
    return report
