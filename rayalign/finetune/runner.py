"""The job runner: moves each fine-tuning job through OpenAI's lifecycle by running it as a Ray job.

    validating_files  the training (and validation) file converted for the method
                      (rayalign/data/openai_files.py) into <storage>/jobs/<job id>/     -> queued
    queued            staged and submitted to the Ray job server (rayalign/jobs), the same
                      `rayalign sft|dpo|rlhf` a user would run                          -> running
    running           each new metrics line of the run folder an event, each saved step a
                      checkpoint; the Ray job's end decides      -> succeeded | failed | cancelled
    paused            the Ray job stopped; resumed, the job is queued again and its run
                      starts from its last checkpoint, as any rayalign run does

All state is in the Store: `step()` reads the unfinished jobs and does the next thing for each,
so a runner started after a restart carries on where the last one stopped (a Ray job keeps
running while the service restarts). A job cancelled by a client has its Ray job stopped here.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from pathlib import Path

from rayalign.data.openai_files import convert_file, write_rows
from rayalign.data.readers import DataError
from rayalign.finetune.db import Job
from rayalign.finetune.errors import ServiceError
from rayalign.finetune.objects import fine_tuned_name
from rayalign.finetune.recipes import job_run
from rayalign.finetune.store import Store
from rayalign.jobs import client as ray_jobs
from rayalign.jobs.staging import stage_run

logger = logging.getLogger("ray.serve")
# rayalign's own failure lines (rayalign/cli: "rayalign: error: ...", "rayalign: worker failed: ...")
# and the last line of a Python traceback.
ERROR_LINE = re.compile(r"^(rayalign: [a-z ]*(error|failed)|[A-Za-z_.]*(Error|Exception)): .+$")


def run_name(job: Job) -> str:
    """The run folder's name: `ft-` and the job id's random tail."""
    return "ft-" + job.id.removeprefix("ftjob-")


class Runner:
    def __init__(self, store: Store, settings, bases: dict[str, str]):
        """`settings`: FineTuneSettings; `bases`: served base model name -> what a recipe names
        it by (a built-in name or a folder)."""
        self.store, self.settings, self.bases = store, settings, bases
        self._jobs = None  # the job server's client, made on first use
        self.runs_dir = Path(settings.storage).resolve() / "runs"

    @property
    def jobs(self):
        if self._jobs is None:
            self._jobs = ray_jobs.client(self.settings.ray_address)
        return self._jobs

    def step(self) -> None:
        """One pass over the unfinished jobs, and over cancelled or paused ones whose Ray job may still run."""
        for job in self.store.active_jobs():
            try:
                {"validating_files": self.prepare, "queued": self.submit, "running": self.watch}[job.status](job)
            except ServiceError as exc:  # another writer moved the job first: read it again next pass
                logger.info("fine-tuning job %s: %s", job.id, exc)
            except Exception as exc:  # the cluster unreachable, a broken file system: retried next pass
                logger.warning("fine-tuning job %s: %s: %s", job.id, type(exc).__name__, exc)
        for job in self.store.to_stop():
            self.stop(job)

    # ------------------------------------------------------------------ validating_files -> queued
    def prepare(self, job: Job) -> None:
        if job.model not in self.bases:  # the service restarted without that base model
            self._fail(job, "model_not_available", f"model {job.model!r} is no longer served here", "model")
            return
        folder = Path(self.settings.storage).resolve() / "jobs" / job.id
        kind = job.method["type"]
        paths = {}
        for param, file_id in (("training_file", job.training_file), ("validation_file", job.validation_file)):
            if not file_id:
                continue
            stored = self.store.get_file(job.tenant, file_id, param)
            try:
                rows = convert_file(stored.path, kind, source=stored.filename)
            except DataError as exc:
                self._fail(job, "invalid_" + param, str(exc).replace(stored.path, stored.filename), param)
                return
            paths[param] = folder / f"{param}.jsonl"
            write_rows(rows, paths[param])
            if param == "training_file":
                count = len(rows)
        run = job_run(job.method, model=self.bases[job.model], train=str(paths["training_file"]),
                      validation=str(paths["validation_file"]) if "validation_file" in paths else None,
                      run_name=run_name(job), output_dir=str(self.runs_dir), seed=job.seed,
                      recipes=self.settings.recipes, operator=self.settings.overrides,
                      score_model_url=self.settings.score_model_url, rows=count)
        (folder / "run.json").write_text(json.dumps(run.__dict__))
        self.store.add_event(job.id, f"Validated {count} training examples")
        self.store.move(job.id, "queued")
        self.store.add_event(job.id, "Fine-tuning job queued")

    # ------------------------------------------------------------------ queued -> running
    def submit(self, job: Job) -> None:
        """Submit the run; a resumed job's run starts from its run folder's last checkpoint."""
        folder = Path(self.settings.storage).resolve() / "jobs" / job.id
        run = json.loads((folder / "run.json").read_text())
        workdir = Path(tempfile.mkdtemp(prefix="stage-", dir=folder))
        staged = stage_run([run["command"]], run["recipe"], run["overrides"], [], str(self.runs_dir), workdir)
        submission = ray_jobs.submit(self.jobs, staged)
        self.store.note(job.id, ray_job=submission, run_dir=staged.run_dir, stopped=False)
        try:
            self.store.move(job.id, "running")
        except ServiceError:  # cancelled while it was being submitted
            self.stop(self.store.job(job.id))
            raise
        resumed = job.progress > 0
        self.store.add_event(job.id, f"Fine-tuning job {'resumed' if resumed else 'started'} (Ray job {submission})")

    # ------------------------------------------------------------------ running -> the end
    def watch(self, job: Job) -> None:
        try:
            ray_job = ray_jobs.find(self.jobs, job.ray_job)
        except ray_jobs.NoSuchJob:  # a cluster started anew, without the old one's job table
            self._fail(job, "job_lost", f"the cluster no longer knows Ray job {job.ray_job}; create the job again",
                       None)
            return
        self.record_progress(job)
        if ray_job.status in ray_jobs.ACTIVE:
            return
        if ray_job.status == "SUCCEEDED" and (Path(job.run_dir) / "final").is_dir():
            self.store.move(job.id, "succeeded", fine_tuned_model=fine_tuned_name(job))
            self.store.add_event(job.id, "The job has successfully completed")
        elif ray_job.status == "STOPPED":
            self._fail(job, "job_stopped", "the Ray job was stopped outside the service", None)
        else:
            self._fail(job, "training_failed", self.failure(job, ray_job), None)

    def record_progress(self, job: Job) -> None:
        """New metrics lines as events; each saved step as a checkpoint."""
        metrics = Path(job.run_dir) / "metrics.jsonl"
        lines = metrics.read_text().splitlines() if metrics.is_file() else []
        complete = lines if not lines or lines[-1].endswith("}") else lines[:-1]  # a line being written waits
        for line in complete[job.progress:]:
            record = json.loads(line)
            step = record.pop("step")
            record.pop("time", None)
            figures = ", ".join(f"{k}={v:.4g}" for k, v in record.items() if isinstance(v, (int, float)))
            self.store.add_event(job.id, f"Step {step}: {figures}", data={"step": step, **record})
        if len(complete) > job.progress:
            self.store.note(job.id, progress=len(complete))
        known = {c.step_number for c in self.store.checkpoints_of(job.id)}
        new = [folder for folder in sorted((Path(job.run_dir) / "checkpoints").glob("step-*"))
               if int(folder.name.removeprefix("step-")) not in known]
        figures = [json.loads(line) for line in complete] if new else []
        for folder in new:
            step = int(folder.name.removeprefix("step-"))
            last = next((f for f in reversed(figures) if f.get("step", 0) <= step), {})
            numbers = {k: v for k, v in last.items() if isinstance(v, (int, float)) and k not in ("step", "time")}
            self.store.add_checkpoint(job.id, step, numbers, f"{fine_tuned_name(job)}:ckpt-step-{step}", str(folder))

    def failure(self, job: Job, ray_job) -> str:
        """What went wrong, from the end of the job's log: the last error line (a DataError names
        its file, line and field), else Ray's message."""
        try:
            logs = self.jobs.get_job_logs(job.ray_job)
        except Exception:  # logs gone with a dead head: Ray's own message is what is left
            logs = ""
        errors = [line.strip() for line in logs.splitlines() if ERROR_LINE.match(line.strip())]
        message = errors[-1] if errors else (ray_job.message or f"the Ray job ended {ray_job.status}")
        return message.replace(str(Path(self.settings.storage).resolve()), "<storage>")

    def stop(self, job: Job) -> None:
        try:
            active = bool(job.ray_job) and ray_jobs.find(self.jobs, job.ray_job).status in ray_jobs.ACTIVE
        except ray_jobs.NoSuchJob:  # gone with a cluster started anew: nothing left to stop
            active = False
        if active:
            self.jobs.stop_job(job.ray_job)
            self.store.add_event(job.id, f"Ray job {job.ray_job} stopped")
        self.store.note(job.id, stopped=True)

    def _fail(self, job: Job, code: str, message: str, param: str | None) -> None:
        self.store.move(job.id, "failed", error={"code": code, "message": message, "param": param})
        self.store.add_event(job.id, f"The job failed: {message}", level="error")
