"""Supervised fine-tuning (full, partial or LoRA) on a data-parallel group of DeepSpeed ranks.

    1. encode the data once on the driver (chat template, completion-only loss mask)
    2. start the trainer group: one DeepSpeed rank per Ray actor
    3. run the offline loop: resume or measure held-out loss, train, checkpoint, measure again
    4. export the adapter or model to runs/<name>/final and write the report
"""

from __future__ import annotations

import math

from rayalign.config import DataConfig, RunConfig
from rayalign.console import say
from rayalign.data.batching import collate
from rayalign.data.encode import Encoded, encode_sft
from rayalign.data.formats import CONVERSATIONAL, LANGUAGE_MODELING, PROMPT_COMPLETION, load_examples
from rayalign.data.readers import Row
from rayalign.models.chain import resolve_start
from rayalign.models.loading import load_tokenizer
from rayalign.pipelines.offline import OfflineMethod, split_held_out, total_steps, train_offline, trainer_group
from rayalign.runs import RunDir
from rayalign.workers.cluster import connect

SFT_FORMATS = (LANGUAGE_MODELING, PROMPT_COMPLETION, CONVERSATIONAL)


def read_sft_data(data: DataConfig) -> tuple[tuple[str, list[Row]], tuple[str, list[Row]] | None]:
    """(format, rows) of the training file and of the held-out file (or None), validated."""
    return load_examples(data.train, SFT_FORMATS), load_examples(data.eval, SFT_FORMATS) if data.eval else None


def load_sft_data(data: DataConfig, tokenizer, seed: int, read: tuple | None = None
                  ) -> tuple[list[Encoded], list[Encoded]]:
    """The encoded training and held-out examples; `read` is what `read_sft_data` returned, if called."""
    train, held_out = read or read_sft_data(data)

    def encode(fmt: str, rows: list[Row]) -> list[Encoded]:
        return [encode_sft(row, fmt, tokenizer, data.max_length, data.completion_only) for row in rows]

    return split_held_out(encode(*train), encode(*held_out) if held_out else [], data, seed)


def summarise_sft(stats: list[dict]) -> dict:
    tokens = sum(s["tokens"] for s in stats)
    loss = sum(s["loss_sum"] for s in stats) / max(tokens, 1)
    return {"eval/loss": loss, "eval/perplexity": math.exp(min(loss, 50)), "eval/tokens": tokens}


def run_sft(config: RunConfig) -> dict:
    read = read_sft_data(config.data)  # a bad file stops the run here, before a run folder or a model
    run = RunDir(config, tensorboard=config.logging.tensorboard)
    config = resolve_start(config)  # a run folder or adapter to start from: merged once, or continued
    tokenizer = load_tokenizer(config.model.name_or_path)
    train_set, eval_set = load_sft_data(config.data, tokenizer, config.seed, read)
    steps = total_steps(config, len(train_set))
    say(f"[sft] {len(train_set)} training examples, {len(eval_set)} held out; {steps} steps on "
        f"{config.placement.num_workers} worker(s)")
    method = OfflineMethod("sft", {}, "causal_lm", lambda batch: collate(batch, tokenizer.pad_token_id),
                           summarise_sft, lambda example: len(example.input_ids))

    connect(config.placement.address)
    trainers, counts = trainer_group(config, method, steps, role="PolicyTrainer")
    say(f"[sft] {counts}")
    with trainers:
        before, after, step = train_offline(config, run, trainers, method, train_set, eval_set, steps)
        trainers.call("export", str(run.final), config.model.name_or_path)
        trainers.call("shutdown")

    report = {
        "method": "sft",
        "steps": step,
        "eval_loss_before": before.get("eval/loss"),
        "eval_loss_after": after.get("eval/loss"),
        "eval_perplexity_before": before.get("eval/perplexity"),
        "eval_perplexity_after": after.get("eval/perplexity"),
        "trainable": counts,
        "final": str(run.final),
    }
    run.write_report(report)
    run.close()
    return report
