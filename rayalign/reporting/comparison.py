"""A comparison page for several runs: for every held-out set they were evaluated on, one
table (a row per run), one bar chart with 95% intervals, and the same sample prompts
answered by each run, side by side. Runs appear in the order given, named by run name.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from rayalign.reporting.html import write_page
from rayalign.reporting.overview import describe
from rayalign.reporting.results import result_block, result_set
from rayalign.reporting.run_folder import RunFolder, load_run

REPORT_FILE = "report.html"
USED = ("rayalign eval", "prompted", "after training")  # the results that stand for a run, best first
SUMMARY = ("method", "base model", "training data", "steps", "status")


def write_comparison(run_dirs: list[str | Path], out_path: str | Path) -> Path:
    runs = [load_run(folder) for folder in run_dirs]
    sets = list(dict.fromkeys(result_set(result) for run in runs for what, result in run.results() if what in USED))
    blocks = []
    for name in sets:
        entries = [(run.name, result) for run in runs if (result := result_for(run, name)) is not None]
        blocks.append(result_block(name, entries))
    rows = []
    for run in runs:
        facts = dict(describe(run)["facts"])
        rows.append({"name": run.name, "folder": str(run.path), "facts": [facts.get(label) for label in SUMMARY]})
    return write_page("comparison.html", Path(out_path), runs=rows, columns=SUMMARY, blocks=blocks,
                      notes=[f"{run.name}: {note}" for run in runs for note in run.notes],
                      written=time.strftime("%Y-%m-%d %H:%M"))


def result_for(run: RunFolder, name: str) -> dict | None:
    """The run's result on a held-out set (a `result_set` name): its `rayalign eval` result,
    else a prompting run's held-out result, else an RL run's result after training."""
    ranked = sorted((USED.index(what), number, result) for number, (what, result) in enumerate(run.results())
                    if what in USED and result_set(result) == name)
    return ranked[0][2] if ranked else None


def default_comparison_path(run_dirs: list[str | Path]) -> Path:
    """`report.html` in the folder the runs share (a parent, never one of the runs)."""
    folders = [os.path.abspath(folder) for folder in run_dirs]
    common = os.path.commonpath(folders)
    if common in folders:
        common = os.path.dirname(common)
    relative = os.path.relpath(common)
    return Path(relative if not relative.startswith("..") else common) / REPORT_FILE

