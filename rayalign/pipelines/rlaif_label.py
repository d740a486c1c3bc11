"""`rayalign rlaif label`: a preference dataset labelled by an AI labeler (RLAIF).

    1. read the input: pairs (their chosen/rejected labels become the reference, and the pair
       is shown in a seeded random order), unlabelled a/b pairs, or prompts: then the policy
       writes `answers_per_prompt` answers each on the rollout workers, every two a pair, and
       the `rlaif.reference` rules score them for reference labels
    2. the labeler: the rollout workers again (the labeler's weights reloaded into the same
       engines when the architecture matches), or an OpenAI-compatible endpoint
    3. chunk by chunk: each pair judged in both orders, P(a is better) from the choice tokens'
       log-probs; every finished chunk is appended to labels.partial.jsonl, so a rerun resumes
    4. labels.jsonl, the preference sets (soft, hard, single order), card.md and report.json
       with the labeler's agreement with the reference, position bias and consistency
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from rayalign.config import RunConfig
from rayalign.console import say, terminal
from rayalign.data.ai_labels import (VARIANTS, Pair, card, figures, headline_figures, label_row, preference_rows,
                                     read_examples, read_pairs, skipped_row)
from rayalign.data.prompts import load_prompts
from rayalign.models.chain import start_model
from rayalign.models.loading import load_tokenizer
from rayalign.pipelines.chat_models import open_chat_model, start_workers
from rayalign.pipelines.evaluate import EvalWorkers
from rayalign.rewards.labeler import DEFAULT_RUBRIC, Ask, Example, label_pairs
from rayalign.runs import RunDir, read_log, write_atomic

PARTIAL = "labels.partial.jsonl"
ANSWERS = "answers.jsonl"


def asking(config: RunConfig) -> Ask:
    """How the labeler is asked, from the `labeler:` section."""
    labeler = config.labeler
    preamble = labeler.rubric or DEFAULT_RUBRIC
    if labeler.constitution:
        from rayalign.data.constitution import load_constitution

        preamble = load_constitution(labeler.constitution).preamble()
    examples = [Example(**e) for e in read_examples(labeler.examples)] if labeler.examples else []
    return Ask(preamble, examples, labeler.rationale, labeler.rationale_max_tokens, labeler.top_logprobs)


def answer_prompts(config: RunConfig, workers: EvalWorkers, tokenizer) -> list[Pair]:
    """Prompts-only input: the policy's answers, every two of a prompt's answers a pair,
    with reference labels from the `rlaif.reference` rules when there are any."""
    rollout = config.rollout
    prompts = load_prompts(config.data.train, tokenizer, (rollout.max_model_len or config.data.max_length)
                           - rollout.max_new_tokens)[: config.rlaif.max_pairs]
    say(f"[rlaif] the policy answers {len(prompts)} prompts, {config.rlaif.answers_per_prompt} answers each")
    groups = workers.generate([p.prompt_ids for p in prompts], config.rlaif.answers_per_prompt, False)
    pairs = []
    for example, group in zip(prompts, groups):
        texts = [tokenizer.decode(s.response_ids, skip_special_tokens=True).strip() for s in group]
        for a, b in itertools.combinations(texts, 2):
            pairs.append(Pair(len(pairs), example.prompt, a, b, None, example.row.source, example.row.line,
                              example.metadata))
    if workers.reward is not None:
        prompts_, texts = [p.prompt for p in pairs for _ in "ab"], [t for p in pairs for t in (p.a, p.b)]
        totals, _ = workers.score(prompts_, texts, [p.metadata for p in pairs for _ in "ab"])
        for pair, (a, b) in zip(pairs, zip(totals[::2], totals[1::2])):
            pair.reference = None if a == b else float(a > b)
    return pairs


def policy_pairs(config: RunConfig, run: RunDir, workers: EvalWorkers, tokenizer) -> list[Pair]:
    """The policy's answer pairs: kept in answers.jsonl, so a rerun labels the same answers."""
    saved = run.path / ANSWERS
    if saved.is_file():
        return [Pair(**json.loads(line)) for line in saved.read_text().splitlines()]
    pairs = answer_prompts(config, workers, tokenizer)
    write_atomic(saved, "".join(json.dumps(asdict(p)) + "\n" for p in pairs))
    return pairs


def resume(path: Path, labeler: str, preamble: str) -> dict[int, dict]:
    """Rows of finished chunks by this labeler asked this way (a line cut short by an
    interruption is dropped; rows of another labeler or rubric are labelled again)."""
    return {row["index"]: row for row in read_log(path)
            if row.get("skipped") or (row.get("labeler") == labeler and row.get("rubric") == preamble)}


def run_label(config: RunConfig) -> dict:
    run = RunDir(config, tensorboard=False)
    labeler, task = config.labeler, config.rlaif
    ask = asking(config)
    pairs = read_pairs(config.data.train, config.seed)
    workers = None
    try:
        if pairs is None:  # prompts: the policy answers first
            policy = start_model(config.model.name_or_path)
            workers = start_workers(config, policy, task.reference)
            pairs = policy_pairs(config, run, workers, load_tokenizer(policy))
        pairs = pairs[: task.max_pairs]
        partial = run.path / PARTIAL
        done = resume(partial, labeler.label, ask.preamble)
        todo = [p for p in pairs if p.index not in done]
        say(f"[rlaif] {len(pairs)} pairs ({len(done)} labelled already) by {labeler.label}; "
            f"orders: {task.orders}; rationale: {labeler.rationale}; {len(ask.examples)} few-shot examples")
        feedback = None
        if todo:
            feedback, workers = open_chat_model(config.labeler, config, workers, workers.rewards if workers else ())
        bar = tqdm(total=len(pairs), initial=len(done), desc="label", unit="pair", file=terminal(),
                   disable=not config.logging.progress, dynamic_ncols=True)
        with open(partial, "a") as out:
            for start in range(0, len(todo), task.chunk):
                chunk = todo[start: start + task.chunk]
                rows = _label_chunk(feedback, ask, chunk, task.orders == "both", labeler.label)
                out.write("".join(json.dumps(row) + "\n" for row in rows))
                out.flush()
                done.update({row["index"]: row for row in rows})
                bar.update(len(chunk))
        bar.close()
    finally:
        if workers is not None:
            workers.close()

    rows = [done[p.index] for p in pairs]
    result = figures(rows)
    write_atomic(run.path / "labels.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    written = {}
    for name, variant in VARIANTS.items():
        if variant != "single" and task.orders == "one":
            continue
        out_rows = preference_rows(rows, variant, task.disagreement == "drop")
        write_atomic(run.path / name, "".join(json.dumps(r) + "\n" for r in out_rows))
        written[name] = len(out_rows)
    about = {"name": config.name, "labeler": labeler.label, "input": config.data.train,
             "both_orders": task.orders == "both", "rationale": labeler.rationale, "examples": len(ask.examples),
             "preamble": ask.preamble}
    write_atomic(run.path / "card.md", card(result, about))
    report = {"method": "rlaif_label", "labeling": result, "labeler_figures": headline_figures(result),
              "datasets": written, "labeler": labeler.label,
              "final": str(run.path / "preferences.jsonl" if task.orders == "both"
                            else run.path / "preferences_single.jsonl")}
    write_atomic(run.path / "card.json", json.dumps({**about, **result}, indent=1) + "\n")
    run.write_report(report)
    run.close()
    _say_figures(result)
    return report


def _label_chunk(feedback, ask: Ask, chunk: list[Pair], both_orders: bool, labeler: str) -> list[dict]:
    """Label a chunk; identical answers are skipped, not asked."""
    asked = [p for p in chunk if p.a != p.b]
    labels = label_pairs(feedback, ask, [p.prompt for p in asked], [p.a for p in asked], [p.b for p in asked],
                         both_orders) if asked else []
    by_index = {p.index: label_row(p, label, labeler, ask.preamble) for p, label in zip(asked, labels)}
    return [by_index.get(p.index) or skipped_row(p, "identical answers") for p in chunk]


def _say_figures(result: dict) -> None:
    def share(value):
        return "n/a" if value is None else f"{value:.3f}"

    say(f"[rlaif] labelled {result['labelled']} of {result['pairs']} pairs ({result['skipped']} skipped, "
        f"{result['soft']} soft); first position wins {share(result['first_position_wins'])}, "
        f"position consistency {share(result['position_consistency'])}")
    for key in ("agreement_single_order", "agreement_both_orders_hard", "agreement_both_orders_soft"):
        figure = result[key]
        if figure["pairs"]:
            say(f"[rlaif] {key.replace('_', ' ')}: {share(figure['agreement'])} on {figure['pairs']} pairs "
                f"with a reference ({figure['ties']} ties)")
