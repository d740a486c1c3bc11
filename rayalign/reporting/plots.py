"""The report's plots, drawn with matplotlib and returned as `data:image/png;base64,...` URIs,
so the page carries its images inside itself and loads nothing from anywhere.

Figures are built with `matplotlib.figure.Figure` (no pyplot, no global state, no display).
"""

from __future__ import annotations

import base64
import io
import math

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from rayalign.reporting.curves import Panel

DPI = 100
PANEL_SIZE = (5.6, 3.0)  # inches: two panels side by side on a laptop screen
FEW_POINTS = 25          # series with at most this many points get markers


def panel_image(panel: Panel) -> str:
    figure = Figure(figsize=PANEL_SIZE, layout="constrained")
    axes = figure.subplots()
    if panel.stacked:
        steps = sorted({step for series in panel.series for step in series.steps})
        stacks = [dict(zip(series.steps, series.values)) for series in panel.series]
        axes.stackplot(steps, [[stack.get(step, 0.0) for step in steps] for stack in stacks],
                       labels=[series.label for series in panel.series], alpha=0.85)
    else:
        for series in panel.series:
            marker = "o" if len(series.steps) <= FEW_POINTS else None
            line, = axes.plot(series.steps, series.values, label=series.label, marker=marker, markersize=3,
                              linewidth=1.4)
            if series.spread:
                axes.fill_between(series.steps, [v - s for v, s in zip(series.values, series.spread)],
                                  [v + s for v, s in zip(series.values, series.spread)],
                                  color=line.get_color(), alpha=0.15, linewidth=0)
    axes.set_title(panel.title, fontsize=11)
    axes.set_xlabel("step")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(alpha=0.3)
    if panel.stacked:
        axes.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0), reverse=True)
    elif len(panel.series) > 1:
        axes.legend(fontsize=8, framealpha=0.8)
    return _data_uri(figure)


def bar_chart(categories: list[str], groups: list[tuple[str, list[dict | None]]], ylabel: str) -> str:
    """Grouped bars with 95% intervals as error bars. `groups`: (name, one interval per
    category: {"mean", "low", "high"} or None when that result lacks the category)."""
    width = min(11.0, max(5.6, 1.0 + 0.55 * len(categories) * max(1, len(groups)) ** 0.5))
    figure = Figure(figsize=(width, 3.4), layout="constrained")
    axes = figure.subplots()
    bar = 0.8 / max(1, len(groups))
    for number, (name, intervals) in enumerate(groups):
        positions = [i - 0.4 + bar * (number + 0.5) for i in range(len(categories))]
        means = [_value(item, "mean") for item in intervals]
        below = [_gap(item, "mean", "low") for item in intervals]
        above = [_gap(item, "high", "mean") for item in intervals]
        axes.bar(positions, means, bar * 0.92, yerr=[below, above], capsize=3, label=name,
                 error_kw={"elinewidth": 1, "ecolor": "#333333"})
    axes.set_xticks(range(len(categories)), categories, rotation=20 if len(categories) > 5 else 0,
                    ha="right" if len(categories) > 5 else "center", fontsize=9)
    axes.axhline(0, color="#555555", linewidth=0.8)
    axes.set_ylabel(ylabel)
    axes.grid(axis="y", alpha=0.3)
    if len(groups) > 1:
        axes.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _data_uri(figure)


def _value(item: dict | None, key: str) -> float:
    value = item.get(key) if item else None
    return float(value) if isinstance(value, (int, float)) else math.nan


def _gap(item: dict | None, upper: str, lower: str) -> float:
    gap = _value(item, upper) - _value(item, lower)
    return max(gap, 0.0) if math.isfinite(gap) else 0.0  # a bound may miss its mean by float noise


def _data_uri(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
