"""The run folder `runs/<name>/`: config, metrics, atomic checkpoints, final model, report.

    runs/<name>/config.yaml         the resolved config of the run
    runs/<name>/lineage.json        its parent runs, base model and data origins (rayalign/lineage)
    runs/<name>/metrics.jsonl       one JSON object per logged step
    runs/<name>/tensorboard/        the same metrics for TensorBoard
    runs/<name>/checkpoints/step-N/ complete checkpoints only (written under a temporary
                                    name, then renamed); `latest` names the newest
    runs/<name>/final/              the trained adapter or model
    runs/<name>/report.json         the summary figures
    runs/<name>/rayalign.log        what libraries printed during CLI runs (rayalign/console.py)
    runs/<name>/report.html         the run report (rayalign/reporting), written at close
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from rayalign.config import RunConfig, dump_config
from rayalign.console import say


def write_atomic(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    with os.fdopen(handle, "wb" if isinstance(data, bytes) else "w") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(staging, path)


def read_log(path: Path) -> list[dict]:
    """The rows of an append-only JSONL log (work saved as it finishes); a line cut short by a
    kill is dropped, so its work is done again. No file: no rows."""
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


class RunDir:
    def __init__(self, config: RunConfig, tensorboard: bool = True):
        self.path = config.run_dir.absolute()   # workers may run elsewhere (another cwd, another node)
        self.checkpoints = self.path / "checkpoints"
        self.final = self.path / "final"
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        for stale in self.checkpoints.glob(".tmp-*"):  # a checkpoint interrupted mid-write
            shutil.rmtree(stale, ignore_errors=True)
        write_atomic(self.path / "config.yaml", dump_config(config))
        from rayalign.lineage.record import record_lineage  # warns, never raises: lineage never fails a run

        record_lineage(config, self.path)
        self.keep_last = config.train.keep_last
        self._tensorboard = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tensorboard = SummaryWriter(str(self.path / "tensorboard"))

    # ---------------------------------------------------------------- metrics
    def log(self, step: int, metrics: dict) -> None:
        record = {"step": step, "time": round(time.time(), 3), **metrics}
        with open(self.path / "metrics.jsonl", "a") as out:
            out.write(json.dumps(record) + "\n")
        if self._tensorboard is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)):
                    self._tensorboard.add_scalar(key, value, step)
            self._tensorboard.flush()

    def write_report(self, report: dict) -> None:
        write_atomic(self.path / "report.json", json.dumps(report, indent=2) + "\n")

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()
        try:  # the report is a reading aid: a failure to render it never fails the run
            from rayalign.reporting import write_run_report

            write_run_report(self.path)
        except Exception as exc:
            say(f"rayalign: warning: no report.html for {self.path} ({type(exc).__name__}: {exc})")

    # ---------------------------------------------------------------- checkpoints
    @contextlib.contextmanager
    def checkpoint(self, step: int, state: dict):
        """A staging folder for the workers to write step `step`'s checkpoint into, published
        with the controller's `state` when the block ends. If anything fails (a worker's write,
        a full disk) the staging folder is removed and the previous checkpoint stays `latest`."""
        staging = self.staging_checkpoint(step)
        try:
            yield staging
            self.commit_checkpoint(staging, step, state)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def staging_checkpoint(self, step: int) -> Path:
        """An empty folder for workers to write into; `commit_checkpoint` publishes it."""
        staging = self.checkpoints / f".tmp-step-{step:06d}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        return staging

    def commit_checkpoint(self, staging: Path, step: int, state: dict) -> Path:
        """Add the controller's state, rename into place, point `latest` at it, prune old ones."""
        write_atomic(staging / "controller.json", json.dumps({"step": step, **state}))
        final = self.checkpoints / f"step-{step:06d}"
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        write_atomic(self.checkpoints / "latest", final.name)
        for old in sorted(self.checkpoints.glob("step-*"))[: -self.keep_last]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def latest_checkpoint(self) -> tuple[Path, dict] | None:
        """(folder, controller state) of the newest complete checkpoint, or None."""
        pointer = self.checkpoints / "latest"
        if not pointer.is_file():
            return None
        folder = self.checkpoints / pointer.read_text().strip()
        state = json.loads((folder / "controller.json").read_text())
        return folder, state
