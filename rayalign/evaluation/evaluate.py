"""Evaluate a model on prompts: generate answers, score them with reward sources, sum up.

Generation and scoring are functions the caller passes in, so the same evaluation runs on the
rollout workers of an RL run and on those `rayalign eval` starts:

    generate(prompt_ids, n, greedy) -> n Samples per prompt
    score(prompts, completions, metadata) -> (weighted totals, {source label: scores})

The result (a JSON-ready dict) holds every source's mean with its 95% interval, the same per
`task` column, pass@k for 0/1 sources when several samples were drawn, the answers' length in
tokens, and the first answer to every prompt with its scores:

    {"model", "label", "data", "data_label", "prompt", "variant",
     "sampling": {"samples", "temperature", "max_new_tokens"}, "prompts": N,
     "scores": {"total": {"mean", "low", "high", "n"}, "<source>": {...}},
     "by_task": {"<task>": {"total": {...}, "<source>": {...}}},
     "pass_at_k": {"<source>": {"1": p, "2": p, ...}},
     "response_length": {"mean", "median", "low", "high", "n"},
     "answers": [{"index", "prompt", "task", "completion", "scores": {"total", "<source>"}, "tokens"}],
     "seconds", "time"}
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from rayalign.data.prompts import PromptExample
from rayalign.evaluation.stats import interval, is_binary, pass_at_ks, prompt_interval

TOTAL = "total"


@dataclass
class Sampling:
    samples: int = 1            # answers per prompt
    temperature: float = 0.0    # 0: greedy
    max_new_tokens: int = 64

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def data_label(path: str) -> str:
    """A data file's short name: `shipped:quickstart_eval.jsonl` -> `quickstart_eval`."""
    return Path(path.removeprefix("shipped:").rstrip("/")).name.split(".")[0]


def question_text(prompt) -> str:
    """What the user asked: the prompt string, or the last user message of a conversation."""
    if isinstance(prompt, str):
        return prompt
    users = [m["content"] for m in prompt if m["role"] == "user"]
    return users[-1] if users else prompt[-1]["content"]


def evaluate(examples: list[PromptExample], generate: Callable, score: Callable, tokenizer, sampling: Sampling,
             about: dict | None = None) -> dict:
    """Answer every example `sampling.samples` times, score, and sum up (see the module docstring)."""
    started = time.perf_counter()
    n = sampling.samples
    groups = generate([e.prompt_ids for e in examples], n, sampling.greedy)
    samples = [sample for group in groups for sample in group]
    completions = tokenizer.batch_decode([s.response_ids for s in samples], skip_special_tokens=True)
    owners = [e for e in examples for _ in range(n)]
    totals, per_source = score([e.prompt for e in owners], completions, [e.metadata for e in owners])
    columns = {TOTAL: totals, **per_source}

    def rows(values: list[float], picked: list[int]) -> list[list[float]]:
        return [values[i * n:(i + 1) * n] for i in picked]

    everyone = list(range(len(examples)))
    tasks = defaultdict(list)
    for index, example in enumerate(examples):
        if isinstance(example.metadata.get("task"), str):
            tasks[example.metadata["task"]].append(index)
    lengths = [len(s.response_ids) for s in samples]
    result = {
        **(about or {}),
        "sampling": asdict(sampling),
        "prompts": len(examples),
        "scores": {label: prompt_interval(rows(values, everyone)) for label, values in columns.items()},
        "by_task": {task: {label: prompt_interval(rows(values, picked)) for label, values in columns.items()}
                    for task, picked in sorted(tasks.items())},
        "pass_at_k": ({label: pass_at_ks(rows(values, everyone)) for label, values in per_source.items()
                       if is_binary(values)} if n > 1 else {}),
        "response_length": {**interval([float(x) for x in lengths]), "median": statistics.median(lengths)},
        "answers": [{"index": i, "prompt": question_text(e.prompt), "task": e.metadata.get("task"),
                     "completion": completions[i * n],
                     "scores": {label: values[i * n] for label, values in columns.items()},
                     "tokens": lengths[i * n]} for i, e in enumerate(examples)],
    }
    result["seconds"] = round(time.perf_counter() - started, 2)
    result["time"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return result


def flat_metrics(result: dict, prefix: str = "eval") -> dict[str, float]:
    """The means of a result as flat metrics (`eval/reward`, `eval/<source>`, `eval/task/<task>`,
    `eval/response_length`), for metrics.jsonl and TensorBoard."""
    scores = result["scores"]
    return {f"{prefix}/reward": scores[TOTAL]["mean"],
            **{f"{prefix}/{label}": value["mean"] for label, value in scores.items() if label != TOTAL},
            f"{prefix}/response_length": result["response_length"]["mean"],
            **{f"{prefix}/task/{task}": value[TOTAL]["mean"] for task, value in result["by_task"].items()}}


def brief(result: dict) -> str:
    """One line: each score's mean and interval, and the mean answer length."""
    parts = [f"{label} {v['mean']:.3f} [{v['low']:.3f}, {v['high']:.3f}]" for label, v in result["scores"].items()]
    return ", ".join(parts) + f"; {result['response_length']['mean']:.1f} tokens per answer"
