"""Which training curves a run's metrics.jsonl makes, and how they group into panels.

Generic over methods: every numeric metric that is present is drawn. Metrics that share a
scale share a panel (loss on training batches and held out; reward per source with its
spread; held-out reward per source and per task; seconds per phase, stacked); every other
metric gets a panel of its own, ordered training, policy, responses, held out, speed.
A metric that never changed is listed with its value instead of drawn, and a series of a
single point (a held-out figure measured once) is left to the tables.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# clocks, counters, and sums whose means are logged beside them
NOT_CURVES = re.compile(r"^(step|time)$|(^|/)(samples_seen|prompts_seen|tokens|pairs)$|_sum$")


@dataclass
class Series:
    label: str
    steps: list[int]
    values: list[float]
    spread: list[float] | None = None  # a +- band around the values (a standard deviation)


@dataclass
class Panel:
    title: str
    series: list[Series]
    stacked: bool = False


def training_curves(metrics: list[dict]) -> tuple[list[Panel], list[tuple[str, float]]]:
    """The panels to draw, and the metrics that held one value all run (name, value)."""
    keys = _curve_keys(metrics)
    sources = [key[len("reward/"): -len("_mean")] for key in keys if re.fullmatch(r"reward/.+_mean", key)]
    bands = {f"reward/{source}_mean": f"reward/{source}_std" for source in sources}
    plan = [
        ("Loss", [("train/loss", "training batches"), ("eval/loss", "held out")], False),
        ("Reward per source (mean ± std over samples)", [(f"reward/{s}_mean", s) for s in sources], False),
        "train/", "critic/", "response/",
        ("Held-out reward per source (greedy answers)",
         [("eval/reward", "total"), *((f"eval/{s}", s) for s in sources if s != "total")], False),
        ("Held-out reward per task", [(k, k.removeprefix("eval/task/")) for k in keys if k.startswith("eval/task/")],
         False),
        ("Held-out reward of chosen and rejected answers", [("eval/chosen", "chosen"), ("eval/rejected", "rejected")],
         False),
        "eval/",
        ("Seconds per phase (stacked)", [(k, k[len("time/"): -len("_s")]) for k in keys
                                         if re.fullmatch(r"time/.+_s", k) and k != "time/step_s"], True),
        "",
    ]
    left = [key for key in keys if key not in bands.values()]
    panels, constants = [], []
    for item in plan:
        if isinstance(item, str):  # every metric left under this prefix, one panel each
            chosen = [key for key in left if key.startswith(item)]
            for key in chosen:
                series = _series(metrics, key, key)
                if len(series.steps) > 1 and len(set(series.values)) == 1:
                    constants.append((key, series.values[0]))
                elif len(series.steps) > 1:
                    panels.append(Panel(key, [series]))
        else:
            title, members, stacked = item
            chosen = [key for key, _ in members if key in left]
            series = [_series(metrics, key, label, bands.get(key)) for key, label in members if key in left]
            series = _merge_equal([line for line in series if len(line.steps) > 1])
            if series:
                panels.append(Panel(title, series, stacked))
        left = [key for key in left if key not in chosen]
    return panels, constants


def _merge_equal(lines: list[Series]) -> list[Series]:
    """One line for series that are the same numbers (a single reward source and the total)."""
    kept: list[Series] = []
    for line in lines:
        twin = next((k for k in kept if (k.steps, k.values) == (line.steps, line.values)), None)
        if twin is None:
            kept.append(line)
        else:
            twin.label += f" = {line.label}"
    return kept


def _curve_keys(metrics: list[dict]) -> list[str]:
    """Numeric metric names in order of first appearance, without clocks and counters."""
    keys: dict[str, None] = {}
    for record in metrics:
        for key, value in record.items():
            if _number(value) and not NOT_CURVES.search(key):
                keys.setdefault(key)
    return list(keys)


def _series(metrics: list[dict], key: str, label: str, band: str | None = None) -> Series:
    points = [(r["step"], r[key], r.get(band) if band else None) for r in metrics if _number(r.get(key))]
    spread = [s if _number(s) else 0.0 for _, _, s in points] if band else None
    return Series(label, [p[0] for p in points], [float(p[1]) for p in points], spread)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
