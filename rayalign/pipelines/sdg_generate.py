"""`rayalign sdg generate`: self-instruct. A teacher model writes new tasks from seed tasks,
answers them, and a filter chain keeps the good, new ones.

    1. read the seed tasks (`data.train`); the novelty and near-duplicate filters remember them
    2. round after round, on the rollout workers (or an OpenAI-compatible endpoint):
       a. `requests_per_round` requests, each showing the teacher `in_context` tasks (mostly
          seeds, some kept items) and asking for one more
       b. the teacher answers each new task (sft), or answers it twice and the quality sources
          or the verifier rank the two answers (preference)
       c. the quality sources (judge, reward model, function) score the answers
       d. the filter chain decides each item; the round is appended to candidates.jsonl
          with a closing marker, so a killed run resumes after its last finished round
    3. until `target` items are kept, `max_rounds` rounds or `max_candidates` tasks
    4. for `rayalign review serve`: items.jsonl (the kept items) and flagged.jsonl (those a
       filter rejected, with its reason); the kept data as a training set (sft.jsonl or preferences.jsonl, provenance per record),
       card.md / card.json (provenance and the yield table) and report.json
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from tqdm import tqdm

from rayalign.config import RunConfig
from rayalign.console import say, terminal
from rayalign.data.sdg_chain import Decision, FilterChain, default_filters
from rayalign.data.sdg_filters import LengthFilter
from rayalign.data.sdg_items import confidence, item_id, parse_task, read_seeds, task_request, task_text
from rayalign.data.sdg_output import answer_temperature, write_outputs
from rayalign.pipelines.chat_models import open_chat_model
from rayalign.rewards.function import import_function
from rayalign.runs import RunDir, write_atomic

PARTIAL = "candidates.jsonl"
DECISION_FIELDS = ("kept", "filter", "reason", "scores")


def build_chain(config: RunConfig) -> FilterChain:
    """The filter chain the `sdg.filters` section describes."""
    f = config.sdg.filters
    return FilterChain(default_filters(
        novelty=f.novelty, near_duplicate=f.near_duplicate, blacklist=f.blacklist,
        length=LengthFilter(f.min_task_words, f.max_task_words, 1, f.max_answer_words),
        verify=import_function(f.verify) if f.verify else None, verify_required=f.verify_required,
        quality_key="quality" if f.quality else None, quality_threshold=f.quality_threshold,
        ranked=config.sdg.kind == "preference", embedding=f.embedding))


def restore(path: Path, chain: FilterChain) -> tuple[list[dict], int]:
    """The items of the finished rounds of an earlier run (their decisions counted again, the
    kept ones remembered by the chain) and how many rounds finished. An unfinished round, cut
    short by a kill, is dropped from the file: it is done again, so no item appears twice."""
    if not path.is_file():
        return [], 0
    rows, finished, kept_lines = [], 0, []
    pending, pending_lines = [], []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            break  # a line cut short: the round it belongs to never finished
        pending_lines.append(line)
        if "round_done" in row:
            rows += pending
            kept_lines += pending_lines
            finished = row["round_done"] + 1
            pending, pending_lines = [], []
        else:
            pending.append(row)
    write_atomic(path, "".join(line + "\n" for line in kept_lines))
    chain.restore(rows, [Decision(0, row["kept"], row["filter"], row["reason"], row["scores"]) for row in rows])
    return rows, finished


class Round:
    """One round of self-instruct: new tasks, their answers, their quality scores."""

    def __init__(self, config: RunConfig, feedback, score):
        self.config, self.feedback, self.score = config, feedback, score
        self.verify = import_function(config.sdg.filters.verify) if config.sdg.filters.verify else None

    def tasks(self, seeds: list[dict], kept: list[dict], n: int, round_: int) -> list[str]:
        sdg, teacher = self.config.sdg, self.config.teacher
        rng = random.Random(f"{self.config.seed}-{round_}")
        requests = [task_request(seeds, kept, sdg.in_context, sdg.generated_in_context, rng, self.feedback.prefills)
                    for _ in range(n)]
        replies = self.feedback.continue_chats(requests, teacher.task_max_tokens, 0, ["\n"] if self.feedback.prefills
                                               else None, teacher.temperature)
        return [parse_task(reply.text) for reply in replies]

    def items(self, tasks: list[str], round_: int, first: int) -> list[dict]:
        teacher, kind = self.config.teacher, self.config.sdg.kind
        items = [{"id": item_id(round_, first + i), "instruction": task, "kind": kind, "origin": "generated",
                  "teacher": teacher.label, "round": round_} for i, task in enumerate(tasks)]
        asked = [item for item in items if item["instruction"]]  # an empty task: the format filter counts it
        chats = [[{"role": "user", "content": task_text(item)}] for item in asked]
        if kind == "sft":
            self._answer(asked, chats)
        else:
            replies = self.feedback.continue_chats([c for c in chats for _ in "ab"], teacher.answer_max_tokens,
                                                   teacher.top_logprobs, None, answer_temperature(self.config))
            self._rank(asked, replies)
        return items

    def _answer(self, items: list[dict], chats: list) -> None:
        """Each task's answer: greedy, or with `answers_per_task` > 1 the best of that many
        samples (rejection sampling): a verified answer first, then the higher quality score."""
        teacher, n = self.config.teacher, self.config.sdg.answers_per_task
        replies = self.feedback.continue_chats([c for c in chats for _ in range(n)], teacher.answer_max_tokens,
                                               teacher.top_logprobs, None, answer_temperature(self.config))
        texts = [reply.text.strip() for reply in replies]
        tasks = [task_text(item) for item in items for _ in range(n)]
        quality = self.score(tasks, texts) if self.score else [0.0] * len(texts)
        verified = [0.5] * len(texts)
        if self.verify is not None and n > 1:
            verdicts = [self.verify({**item, "answer": text}) for item, text in zip([i for i in items for _ in range(n)],
                                                                                    texts)]
            verified = [0.5 if v is None else float(bool(v)) for v in verdicts]
        for index, item in enumerate(items):
            best = max(range(index * n, (index + 1) * n), key=lambda k: (verified[k], quality[k]))
            item.update(answer=texts[best], confidence=confidence(replies[best]))
            if self.score:
                item["quality"] = quality[best]
            if n > 1:
                item["answers_tried"] = n

    def _rank(self, items: list[dict], replies: list) -> None:
        """chosen/rejected of each item's two answers (replies in pairs), by the quality sources'
        scores, else by the verifier's verdicts; `margin`, the score difference, says how sure."""
        texts = [reply.text.strip() for reply in replies]
        if self.score:
            scores = self.score([task_text(item) for item in items for _ in "ab"], texts)
        else:
            scores = [float(bool(self.verify({**item, "answer": text})))
                      for item, text in zip([i for i in items for _ in "ab"], texts)]
        for index, item in enumerate(items):
            a, b = 2 * index, 2 * index + 1
            best, other = (a, b) if scores[a] >= scores[b] else (b, a)
            item.update(chosen=texts[best], rejected=texts[other], margin=abs(scores[a] - scores[b]),
                        confidence=confidence(replies[best]))
            if self.score:
                item["quality"] = scores[best]


def quality_scorer(config: RunConfig, workers):
    """prompts, answers -> the weighted quality totals: on the reward worker beside the local
    teacher, or built in this process for an endpoint teacher; None without quality sources."""
    sources = config.sdg.filters.quality
    if not sources:
        return None
    if workers is not None:
        return lambda prompts, answers: workers.score(prompts, answers, [{} for _ in prompts])[0]
    from rayalign.rewards.mix import build_rewards

    mix = build_rewards(sources)
    return lambda prompts, answers: mix.score(prompts, answers)[0]


def run_generate(config: RunConfig) -> dict:
    sdg = config.sdg
    if sdg.kind == "preference" and not (sdg.filters.quality or sdg.filters.verify):
        raise ValueError("sdg.kind preference: set sdg.filters.quality or sdg.filters.verify to rank the two answers")
    run = RunDir(config, tensorboard=False)
    seeds = read_seeds(config.data.train)
    chain = build_chain(config)
    chain.prime(seeds)
    partial = run.path / PARTIAL
    items, round_ = restore(partial, chain)
    kept = [item for item in items if item["kept"]]
    budget = sdg.max_candidates or float("inf")
    say(f"[sdg] {len(seeds)} seed tasks; {len(items)} candidates and {len(kept)} kept from {round_} finished "
        f"rounds; target {sdg.target} kept, teacher {config.teacher.label}")
    workers = None
    try:
        if len(kept) < sdg.target and round_ < sdg.max_rounds and len(items) < budget:
            feedback, workers = open_chat_model(config.teacher, config, None, sdg.filters.quality)
            step = Round(config, feedback, quality_scorer(config, workers))
            bar = tqdm(total=sdg.target, initial=min(len(kept), sdg.target), desc="sdg kept", unit="item",
                       file=terminal(), disable=not config.logging.progress, dynamic_ncols=True)
            with open(partial, "a") as out:
                while len(kept) < sdg.target and round_ < sdg.max_rounds and len(items) < budget:
                    n = int(min(sdg.requests_per_round, budget - len(items)))
                    new = step.items(step.tasks(seeds, kept, n, round_), round_, len(items))
                    chain.run(new)
                    for item, decision in zip(new, chain.decisions[-len(new):]):
                        item.update(kept=decision.kept, filter=decision.filter, reason=decision.reason,
                                    scores=decision.scores)
                    rows = [json.dumps(item) for item in new] + [json.dumps({"round_done": round_})]
                    out.write("".join(row + "\n" for row in rows))
                    out.flush()
                    os.fsync(out.fileno())
                    added = [item for item in new if item["kept"]]
                    items += new
                    kept += added
                    bar.update(min(len(added), max(sdg.target - bar.n, 0)))
                    say(f"[sdg] round {round_}: {n} tasks, {len(added)} kept; {len(kept)} of {sdg.target} "
                        f"kept from {len(items)} candidates")
                    round_ += 1
            bar.close()
    finally:
        if workers is not None:
            workers.close()
    report = write_outputs(run.path, config, seeds, items, chain, round_)
    run.write_report(report)
    run.close()
    say(chain.yield_markdown())
    return report
