"""`rayalign rlaif revise`: critique and revise (Constitutional AI's supervised phase), for SFT and DPO.

    1. read the prompts of data.train (the first rlaif.max_pairs) and the constitution
    2. start rollout workers on the policy (model.name_or_path): it answers, critiques and
       revises itself, greedily
    3. per chunk of rlaif.chunk prompts, each phase one batch over the chunk:
         the first answer
         rlaif.rounds times: a principle drawn at random (seeded per prompt); its critique
         request as a user turn after the current answer -> the critique; its revision request
         after the critique -> the revision, which becomes the current answer
       score the first answers and the final revisions with the run's rewards (default: the rule
       check, when every prompt carries one), and append the chunk to revise.partial.jsonl
    4. write sft.jsonl (prompt, completion = the final revision) and pairs.jsonl (chosen = the
       final revision, rejected = the first answer; rows where they are the same are left out),
       every row with its rounds, first answer, model and constitution as provenance, and the
       report: counts, answer words and scores of the first answers (`_before`) and the final
       revisions (`_after`)

Each round sees the prompt, the current answer, the critique request, the critique and the
revision request, never earlier rounds, so the context stays bounded. A text prompt becomes
one user message (the critique and the revision are further turns of a chat); rows are written
with message lists. A rerun resumes: prompts already in revise.partial.jsonl are not asked again.
"""

from __future__ import annotations

import json
import os
import random
import statistics
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from rayalign.config import ConfigError, RunConfig
from rayalign.console import say, terminal
from rayalign.data.constitution import Constitution, load_constitution
from rayalign.data.prompts import PromptExample, encode_chat, load_prompts
from rayalign.models.chain import start_model
from rayalign.models.loading import load_tokenizer
from rayalign.pipelines.evaluate import RULE_CHECK, EvalWorkers
from rayalign.rewards.feedback import WorkerFeedback
from rayalign.runs import RunDir, write_atomic
from rayalign.workers.cluster import connect

PARTIAL_FILE = "revise.partial.jsonl"
SFT_FILE = "sft.jsonl"
PAIRS_FILE = "pairs.jsonl"


def as_chat(prompt: str | list[dict]) -> list[dict]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def turns(*pairs: tuple[str, str]) -> list[dict]:
    """Messages from (role, content) pairs."""
    return [{"role": role, "content": content} for role, content in pairs]


def prompt_room(config: RunConfig, constitution: Constitution, tokenizer) -> int:
    """Tokens a round adds to the prompt at most: the answer, the longest critique and revision
    requests (with the chat template's own tokens) and the two replies."""
    requests = max(len(encode_chat(turns(("user", "x"), ("assistant", "x"), ("user", p.critique),
                                         ("assistant", "x"), ("user", p.revision)), tokenizer))
                   for p in constitution.principles)
    rl = config.rlaif
    return requests + max(config.rollout.max_new_tokens, rl.revision_max_tokens) + rl.critique_max_tokens \
        + rl.revision_max_tokens


def check_lengths(examples: list[PromptExample], tokenizer, room: int, context: int) -> None:
    for example in examples:
        length = len(encode_chat(as_chat(example.prompt), tokenizer))
        if length + room > context:
            raise example.row.error(None, f"{length} tokens after the chat template; with a round of critique and "
                                    f"revision ({room} tokens at most) it does not fit rollout.max_model_len "
                                    f"{context}")


def revise_chunk(feedback, constitution: Constitution, config: RunConfig, indexed: list[tuple[int, PromptExample]]
                 ) -> list[dict]:
    """Each prompt's first answer, then rounds of critique -> revision; every phase one batch."""
    rl = config.rlaif
    chats = [as_chat(example.prompt) for _, example in indexed]
    first = current = [c.text.strip() for c in feedback.continue_chats(chats, config.rollout.max_new_tokens)]
    draws = [random.Random(config.seed + index) for index, _ in indexed]
    rounds: list[list[dict]] = [[] for _ in indexed]
    for _ in range(rl.rounds):
        principles = [draw.choice(constitution.principles) for draw in draws]
        asked = [chat + turns(("assistant", answer), ("user", p.critique))
                 for chat, answer, p in zip(chats, current, principles)]
        critiques = [c.text.strip() for c in feedback.continue_chats(asked, rl.critique_max_tokens)]
        asked = [chat + turns(("assistant", critique), ("user", p.revision))
                 for chat, critique, p in zip(asked, critiques, principles)]
        current = [c.text.strip() for c in feedback.continue_chats(asked, rl.revision_max_tokens)]
        for trail, p, critique, revision in zip(rounds, principles, critiques, current):
            trail.append({"principle": p.name, "critique_request": p.critique, "critique": critique,
                          "revision_request": p.revision, "revision": revision})
    return [{"index": index, "prompt": chat, "metadata": example.metadata, "first_answer": answer, "rounds": trail}
            for (index, example), chat, answer, trail in zip(indexed, chats, first, rounds)]


def score_records(workers: EvalWorkers, records: list[dict]) -> None:
    """Each record's scores of its first answer and its final revision, one per reward source."""
    answers = [r["first_answer"] for r in records] + [r["rounds"][-1]["revision"] for r in records]
    metadata = [r["metadata"] for r in records] * 2
    _, per_source = workers.score([r["prompt"] for r in records] * 2, answers, metadata)
    for i, record in enumerate(records):
        record["scores"] = {"first": {label: values[i] for label, values in per_source.items()},
                            "final": {label: values[len(records) + i] for label, values in per_source.items()}}


def read_partial(path: Path, examples: list[PromptExample], about: dict, rounds: int) -> dict[int, dict]:
    """The records already made, by prompt index. A torn last line (a run stopped while writing)
    is dropped; a record made with other settings is an error."""
    if not path.is_file():
        return {}
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    done, kept = {}, []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line) if line.endswith("\n") else None
        except json.JSONDecodeError:
            record = None
        if record is None:
            break
        index = record["index"]
        same = (index < len(examples) and record["prompt"] == as_chat(examples[index].prompt)
                and len(record["rounds"]) == rounds and all(record[key] == value for key, value in about.items()))
        if not same:
            raise ConfigError(f"{path}, line {number}: made for another prompt, model, constitution or number of "
                              "rounds than this run's; delete the file to start over, or use another run name")
        done[index] = record
        kept.append(line)
    if len(kept) < len(lines):
        write_atomic(path, "".join(kept))
    return done


def append_records(path: Path, records: list[dict]) -> None:
    with open(path, "a", encoding="utf-8") as out:
        out.write("".join(json.dumps(record) + "\n" for record in records))
        out.flush()
        os.fsync(out.fileno())


def dataset_rows(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """(SFT rows, preference pairs), each with the row's metadata and the record's provenance.
    A blank final revision makes no SFT row; a pair needs two different, non-blank answers."""
    sft, pairs = [], []
    for record in records:
        first, final = record["first_answer"], record["rounds"][-1]["revision"]
        provenance = {key: value for key, value in record.items() if key not in ("index", "prompt", "metadata")}
        shared = {"prompt": record["prompt"], **record["metadata"]}
        if final:
            sft.append({**shared, "completion": turns(("assistant", final)), **provenance})
        if final and first and final != first:
            pairs.append({**shared, "chosen": turns(("assistant", final)), "rejected": turns(("assistant", first)),
                          **provenance})
    return sft, pairs


def summarise(records: list[dict], sft: list[dict], pairs: list[dict]) -> dict:
    """Counts, mean answer words and mean scores of the first answers (before) and final revisions (after)."""
    first = [r["first_answer"] for r in records]
    final = [r["rounds"][-1]["revision"] for r in records]
    report = {
        "counts": {"prompts": len(records), "revised": sum(a != b for a, b in zip(first, final)),
                   "sft_rows": len(sft), "pairs": len(pairs),
                   # a model too small to revise repeats its critique as the revision
                   "revisions_repeating_the_critique": sum(step["revision"] == step["critique"]
                                                           for r in records for step in r["rounds"])},
        "principles": dict(Counter(step["principle"] for r in records for step in r["rounds"])),
        "answer_words_before": statistics.fmean(len(a.split()) for a in first),
        "answer_words_after": statistics.fmean(len(a.split()) for a in final),
    }
    if "scores" in records[0]:  # a rule's mean score is its pass rate
        for key, side in (("scores_before", "first"), ("scores_after", "final")):
            report[key] = {label: statistics.fmean(r["scores"][side][label] for r in records)
                           for label in records[0]["scores"][side]}
    return report


def run_revise(config: RunConfig) -> dict:
    rl = config.rlaif
    if not rl.constitution:
        raise ConfigError("rlaif.constitution: set a constitution file (e.g. shipped:constitution_quickstart.yaml)")
    constitution = load_constitution(rl.constitution)
    run = RunDir(config, tensorboard=False)
    folder = start_model(config.model.name_or_path, config.model.parent)
    tokenizer = load_tokenizer(folder)
    context = config.rollout.max_model_len or config.data.max_length

    # 1. prompts and what is already done
    examples = load_prompts(config.data.train, tokenizer, context)[: rl.max_pairs]
    check_lengths(examples, tokenizer, prompt_room(config, constitution, tokenizer), context)
    about = {"model": config.model.name_or_path, "constitution": {"name": constitution.name, "path": constitution.path}}
    partial = run.path / PARTIAL_FILE
    done = read_partial(partial, examples, about, rl.rounds)
    rewards = config.rewards or ([RULE_CHECK] if all("check" in e.metadata for e in examples) else [])
    todo = [(i, e) for i, e in enumerate(examples) if i not in done]
    say(f"[revise] {len(examples)} prompts of {config.data.train} ({len(done)} done before), {rl.rounds} rounds "
        f"under the {len(constitution.principles)} principles of {constitution.name!r}, by {config.model.name_or_path}"
        + (f"; scored by {', '.join(source.label for source in rewards)}" if rewards else ""))

    # 2-3. answer, critique, revise, chunk by chunk
    if todo:
        connect(config.placement.address)
        workers = EvalWorkers(folder, config.rollout.model_copy(update={"max_model_len": context}), rewards,
                              config.seed, config.placement.timeout_s)
        try:
            feedback = WorkerFeedback(workers.rollout, tokenizer, config.model.name_or_path)
            bar = tqdm(total=len(examples), initial=len(done), desc="revise", unit="prompt",
                       disable=not config.logging.progress, dynamic_ncols=True, file=terminal())
            for start in range(0, len(todo), rl.chunk):
                records = revise_chunk(feedback, constitution, config, todo[start:start + rl.chunk])
                if rewards:
                    score_records(workers, records)
                records = [{**record, **about} for record in records]
                append_records(partial, records)
                done.update((record["index"], record) for record in records)
                bar.update(len(records))
            bar.close()
        finally:
            workers.close()

    # 4. the data sets and the report
    records = [done[i] for i in sorted(done)]
    sft, pairs = dataset_rows(records)
    for name, rows in ((SFT_FILE, sft), (PAIRS_FILE, pairs)):
        write_atomic(run.path / name, "".join(json.dumps(row) + "\n" for row in rows))
    report = {"method": "rlaif_revise", **about, "rounds": rl.rounds, "resumed": len(records) - len(todo),
              **summarise(records, sft, pairs), "sft": str(run.path / SFT_FILE), "pairs": str(run.path / PAIRS_FILE)}
    say(f"[revise] {report['counts']['revised']} of {len(records)} answers changed; {len(sft)} SFT rows -> "
        f"{report['sft']}, {len(pairs)} pairs -> {report['pairs']}")
    run.write_report(report)
    run.close()
    return report
