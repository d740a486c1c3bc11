"""A run folder `runs/<name>/` as the reports read it: whatever of it exists.

A run that stopped halfway has only some of config.yaml, metrics.jsonl, report.json,
eval/<data_label>.json and prompt.json; a folder of evaluation results alone (a base model's,
`rayalign eval --out-dir`) is read too. Loading keeps what is there, leaves the rest
empty, and notes the files it found but could not read, so a report shows what it can.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from rayalign.data.prompting import PROMPT_FILE
from rayalign.data.readers import DataError, resolve_data_path

MARKERS = ("config.yaml", "metrics.jsonl", "report.json")
COUNT_LIMIT_BYTES = 256 * 2 ** 20  # count rows of JSONL files up to this size (a quick read)


@dataclass
class RunFolder:
    path: Path
    config: dict = field(default_factory=dict)
    metrics: list[dict] = field(default_factory=list)
    report: dict = field(default_factory=dict)
    evals: list[dict] = field(default_factory=list)       # the results in eval/*.json
    prompt: dict | None = None                            # prompt.json of a prompting run
    notes: list[str] = field(default_factory=list)        # files present but unreadable

    @property
    def name(self) -> str:
        return self.config.get("name") or self.path.name

    @property
    def method(self) -> str:
        """report.json's method when there is one (it names the RL algorithm), else the config's."""
        return (self.report.get("method") or self.config.get("method")
                or ("eval" if self.evals and not self.config else "unknown"))

    def setting(self, dotted: str):
        """A value of config.yaml by dotted key, or None."""
        node = self.config
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    def results(self) -> list[tuple[str, dict]]:
        """Every evaluation result the run holds, each with a few words on what it measured."""
        found = [(what, self.report[key]) for key, what in (
            ("held_out_before", "before training"), ("held_out_after", "after training"),
            ("held_out", "prompted")) if is_eval_result(self.report.get(key))]
        copies = [result for _, result in found]  # a prompting run also writes its held-out result to eval/
        return found + [("rayalign eval", result) for result in self.evals if result not in copies]


def is_eval_result(value) -> bool:
    return isinstance(value, dict) and isinstance(value.get("scores"), dict) and "data_label" in value


def load_run(path: str | Path) -> RunFolder:
    path = Path(path)
    if not path.is_dir() or not (any((path / marker).is_file() for marker in MARKERS)
                                 or any((path / "eval").glob("*.json"))):
        raise FileNotFoundError(f"{path}: not a run folder (it has none of {', '.join(MARKERS)}, eval/*.json)")
    run = RunFolder(path)
    run.config = _read(run, path / "config.yaml", yaml.safe_load) or {}
    run.report = _read(run, path / "report.json", json.loads) or {}
    run.prompt = _read(run, path / PROMPT_FILE, json.loads)
    run.metrics = _read_metrics(run, path / "metrics.jsonl")
    for file in sorted((path / "eval").glob("*.json")):
        result = _read(run, file, json.loads)
        if is_eval_result(result):
            run.evals.append(result)
        elif result is not None:
            run.notes.append(f"{file.name}: not an evaluation result (no scores or data_label)")
    return run


def sibling_prompt_runs(run: RunFolder) -> list[RunFolder]:
    """The prompting runs in the same parent folder: the baselines a tuned run is held against."""
    return [load_run(folder) for folder in sorted(run.path.parent.iterdir())
            if folder.is_dir() and folder.resolve() != run.path.resolve() and (folder / PROMPT_FILE).is_file()]


def count_rows(data: str) -> int | None:
    """Rows of a data file when that is cheap to learn (JSONL lines, Parquet metadata), else None."""
    try:
        path = resolve_data_path(data)
    except DataError:
        return None
    if path.suffix in (".jsonl", ".json") and path.is_file() and path.stat().st_size <= COUNT_LIMIT_BYTES:
        with open(path, "rb") as handle:
            return sum(1 for line in handle if line.strip())
    if path.suffix == ".parquet" and path.is_file():
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    return None


def _read(run: RunFolder, file: Path, parse):
    if not file.is_file():
        return None
    try:
        return parse(file.read_text())
    except (ValueError, yaml.YAMLError, OSError) as exc:
        run.notes.append(f"{file.name}: could not be read ({type(exc).__name__}: {exc})")
        return None


def _read_metrics(run: RunFolder, file: Path) -> list[dict]:
    """The logged records; a line cut short by a killed run is skipped and noted."""
    if not file.is_file():
        return []
    records = []
    for number, line in enumerate(file.read_text().splitlines(), start=1):
        try:
            record = json.loads(line)
        except ValueError:
            run.notes.append(f"{file.name}, line {number}: not valid JSON, skipped")
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append(record)
    return records
