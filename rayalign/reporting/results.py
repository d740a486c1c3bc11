"""Evaluation results on one held-out set, side by side: the table, the bar chart and the
sample answers that a run report and a comparison both show.

An entry is (name, eval result) as `rayalign eval` writes it: scores with 95% intervals
(total, per reward source, per task), response length and the first answer to each prompt.
All entries of a block share a `data_label` (and sampling), so answers with the same index
answer the same prompt.
"""

from __future__ import annotations

from collections import defaultdict

from rayalign.reporting.plots import bar_chart

SAMPLE_ANSWERS = 8


def result_set(result: dict) -> str:
    """What results compare on: the data, and the sampling unless it was one greedy answer."""
    sampling = result.get("sampling") or {}
    samples, temperature = sampling.get("samples", 1), sampling.get("temperature", 0.0)
    if samples == 1 and not temperature:
        return result["data_label"]
    return f"{result['data_label']} ({samples} samples at temperature {temperature:g})"


def result_block(title: str, entries: list[tuple[str, dict]], samples: int = SAMPLE_ANSWERS) -> dict:
    """The template's view of one held-out set (a `result_set`): table rows, chart, answers."""
    results = [result for _, result in entries]
    sources = _union(key for result in results for key in result.get("scores", {}) if key != "total")
    tasks = _union(task for result in results for task in (result.get("by_task") or {}))
    if len(sources) == 1:
        sources = []  # a single source scores what the total does
    rows = [{
        "name": name,
        "variant": result.get("variant"),
        "prompts": result.get("prompts"),
        "total": _cell(result.get("scores", {}).get("total")),
        "sources": [_cell(result.get("scores", {}).get(source)) for source in sources],
        "tasks": [_cell((result.get("by_task") or {}).get(task, {}).get("total")) for task in tasks],
        "pass_at_k": _pass_at_k(result.get("pass_at_k") or {}),
        "length": (result.get("response_length") or {}).get("mean"),
    } for name, result in entries]
    categories = ["total", *tasks]
    groups = [(name, [result.get("scores", {}).get("total"),
                      *((result.get("by_task") or {}).get(task, {}).get("total") for task in tasks)])
              for name, result in entries]
    return {
        "title": title,
        "data": _union(result.get("data") for result in results),
        "sources": sources,
        "tasks": tasks,
        "rows": rows,
        "sampling": {name: _sampling(result.get("sampling") or {}) for name, result in entries},
        "chart": bar_chart(categories, groups, "mean score (95% interval)"),
        "answers": side_by_side(entries, samples),
    }


def side_by_side(entries: list[tuple[str, dict]], count: int = SAMPLE_ANSWERS) -> dict | None:
    """The same prompts answered by every entry that kept its answers: columns are entries,
    rows are prompts, picked spread over tasks."""
    kept = [(name, {a["index"]: a for a in result.get("answers") or []}) for name, result in entries]
    kept = [(name, answers) for name, answers in kept if answers]
    shared = set.intersection(*(set(answers) for _, answers in kept)) if kept else set()
    if not shared:
        return None
    first = [answer for index, answer in kept[0][1].items() if index in shared]
    prompts = []
    for index in pick_indices(first, count):
        prompt = kept[0][1][index]
        prompts.append({"index": index, "prompt": prompt.get("prompt"), "task": prompt.get("task"),
                        "answers": [_answer(answers[index]) for _, answers in kept]})
    return {"columns": [name for name, _ in kept], "prompts": prompts}


def pick_indices(answers: list[dict], count: int) -> list[int]:
    """About `count` answer indices, shared out over tasks in turn and spread evenly within each."""
    by_task: dict = defaultdict(list)
    for answer in answers:
        by_task[answer.get("task")].append(answer["index"])
    quota = dict.fromkeys(by_task, 0)
    while sum(quota.values()) < min(count, len(answers)):
        for task in by_task:
            if quota[task] < len(by_task[task]) and sum(quota.values()) < count:
                quota[task] += 1
    picked = [indices[int((i + 0.5) * len(indices) / quota[task])] for task, indices in by_task.items()
              for i in range(quota[task])]
    return sorted(picked)


def _answer(answer: dict) -> dict:
    return {"completion": answer.get("completion") or "", "score": (answer.get("scores") or {}).get("total"),
            "tokens": answer.get("tokens"), "blank": not (answer.get("completion") or "").strip()}


def _cell(interval: dict | None) -> dict | None:
    if not isinstance(interval, dict) or not isinstance(interval.get("mean"), (int, float)):
        return None
    return {"mean": interval["mean"], "low": interval.get("low"), "high": interval.get("high"),
            "n": interval.get("n")}


def _sampling(sampling: dict) -> str:
    words = {"samples": "{} sample(s)", "temperature": "temperature {}", "max_new_tokens": "≤ {} new tokens"}
    return ", ".join(words.get(key, key + " {}").format(value) for key, value in sampling.items())


def _pass_at_k(table: dict) -> str:
    return "; ".join(f"{source}: " + ", ".join(f"pass@{k} {value:.2f}" for k, value in by_k.items())
                     for source, by_k in table.items() if isinstance(by_k, dict))


def _union(items) -> list:
    return list(dict.fromkeys(item for item in items if item is not None))
