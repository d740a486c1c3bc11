"""`rayalign sdg label`: model-assisted labelling of the user's own data, as suggestions for
review, not as truth.

    1. read `data.train`: prompts (any prompt format, or self-instruct's `instruction`/`input`)
       or answer pairs (`prompt` with `a`/`b`, or `chosen`/`rejected`)
    2. prompts: the teacher (`teacher:`) drafts an answer to each, greedy, with its confidence
       (the answer's mean token probability); pairs: the labeler (`labeler:`, as in
       `rayalign rlaif label`) judges each in both orders, and the suggestion is the answer it
       prefers, with its confidence max(P(a better), P(b better))
    3. chunk by chunk, each finished chunk appended to suggestions.partial.jsonl (a rerun resumes)
    4. items.jsonl, ready for `rayalign review serve`, lowest confidence first so a reviewer
       starts where the model is least sure; card.md and report.json
"""

from __future__ import annotations

import os

from tqdm import tqdm

from rayalign.config import RunConfig
from rayalign.console import say, terminal
from rayalign.data.ai_labels import read_pairs
from rayalign.data.readers import read_rows
from rayalign.data.sdg_items import confidence, read_seeds, task_text
from rayalign.data.sdg_output import jsonl
from rayalign.pipelines.chat_models import open_chat_model
from rayalign.pipelines.rlaif_label import asking
from rayalign.rewards.judge import completion_text, render_prompt
from rayalign.rewards.labeler import label_pairs
from rayalign.runs import RunDir, read_log, write_atomic

PARTIAL = "suggestions.partial.jsonl"


def read_todo(config: RunConfig) -> tuple[str, list[dict]]:
    """("preference", pair items) or ("sft", prompt items) from the user's file."""
    rows = read_rows(config.data.train)
    pairs = None
    if any({"a", "b"} <= row.fields.keys() or {"chosen", "rejected"} <= row.fields.keys() for row in rows):
        pairs = read_pairs(config.data.train, config.seed)
    if pairs is None:
        items = read_seeds(config.data.train)
        for item in items:
            item.pop("answer", None)  # a draft is asked for every prompt; the user's own answer is not shown
            item.update(id=f"u-{item['id'].removeprefix('seed-')}", origin="user", kind="sft")
        return "sft", items
    return "preference", [{"id": f"u-{p.line}", "instruction": render_prompt(p.prompt), "a": completion_text(p.a),
                           "b": completion_text(p.b),
                           "origin": "user", "kind": "preference"} for p in pairs]


def draft_answers(config: RunConfig, feedback, items: list[dict]) -> list[dict]:
    teacher = config.teacher
    replies = feedback.continue_chats([[{"role": "user", "content": task_text(item)}] for item in items],
                                      teacher.answer_max_tokens, max(teacher.top_logprobs, 1), None,
                                      teacher.answer_temperature)
    return [{**item, "answer": reply.text.strip(), "confidence": confidence(reply), "teacher": teacher.label,
             "kept": True, "filter": None, "reason": "", "scores": {}} for item, reply in zip(items, replies)]


def suggest_preferences(config: RunConfig, feedback, items: list[dict]) -> list[dict]:
    labels = label_pairs(feedback, asking(config), [i["instruction"] for i in items], [i["a"] for i in items],
                         [i["b"] for i in items], config.rlaif.orders == "both")
    rows = []
    for item, label in zip(items, labels):
        row = {key: value for key, value in item.items() if key not in ("a", "b")}
        p_a = label.p_a
        if p_a is None or p_a == 0.5:  # no verdict, or the orders disagreed: a person decides
            row.update(chosen=item["a"], rejected=item["b"], confidence=0.0 if p_a is None else 0.5,
                       reason="the labeler could not tell the answers apart")
        else:
            first = p_a > 0.5
            row.update(chosen=item["a"] if first else item["b"], rejected=item["b"] if first else item["a"],
                       confidence=round(max(p_a, 1 - p_a), 4), reason="")
        row.update(teacher=config.labeler.label, kept=True, filter=None, scores={"p_chosen": row["confidence"]},
                   position_consistent=label.consistent)
        rows.append(row)
    return rows


def run_sdg_label(config: RunConfig) -> dict:
    run = RunDir(config, tensorboard=False)
    kind, items = read_todo(config)
    partial = run.path / PARTIAL
    done = {row["id"]: row for row in read_log(partial)}  # a rerun resumes
    todo = [item for item in items if item["id"] not in done]
    section = config.teacher if kind == "sft" else config.labeler
    say(f"[sdg] {len(items)} {'prompts' if kind == 'sft' else 'pairs'} to label ({len(done)} done already) "
        f"by {section.label}")
    workers = None
    try:
        if todo:
            feedback, workers = open_chat_model(section, config)
            suggest = draft_answers if kind == "sft" else suggest_preferences
            bar = tqdm(total=len(items), initial=len(done), desc="sdg label", unit="item", file=terminal(),
                       disable=not config.logging.progress, dynamic_ncols=True)
            with open(partial, "a") as out:
                for start in range(0, len(todo), config.rlaif.chunk):
                    rows = suggest(config, feedback, todo[start: start + config.rlaif.chunk])
                    out.write(jsonl(rows))
                    out.flush()
                    os.fsync(out.fileno())
                    done.update({row["id"]: row for row in rows})
                    bar.update(len(rows))
            bar.close()
    finally:
        if workers is not None:
            workers.close()
    rows = sorted((done[item["id"]] for item in items), key=lambda row: row["confidence"] or 0.0)
    write_atomic(run.path / "items.jsonl", jsonl(rows))
    known = [row["confidence"] for row in rows if row["confidence"] is not None]
    figures = {"items": len(rows), "kind": kind, "labeller": section.label, "input": config.data.train,
               "mean_confidence": round(sum(known) / len(known), 4) if known else None,
               "below_0.5": sum(c < 0.5 for c in known)}
    write_atomic(run.path / "card.md", "\n".join([
        f"# {config.name}: model-assisted labels (suggestions)", "",
        f"{len(rows)} {'draft answers' if kind == 'sft' else 'preference suggestions'} for `{config.data.train}` "
        f"by `{section.label}`, each with its confidence; mean confidence {figures['mean_confidence']}.", "",
        "These are suggestions, not truth: review them with `rayalign review serve items.jsonl` (lowest "
        "confidence first) and build the dataset from the decisions with `rayalign review import`.", ""]))
    report = {"method": "sdg_label", "labelling": figures, "final": str(run.path / "items.jsonl")}
    run.write_report(report)
    run.close()
    return report
