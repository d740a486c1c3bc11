"""Ray's Job Submission SDK, for rayalign runs: submit a staged run, follow it, list, stop.

Each job carries metadata naming its run and run folder, so `rayalign jobs` can show runs
rather than submission ids, and a second submission of a run that is still going is refused
(two jobs writing one run folder would corrupt its checkpoints). Resubmitting a run that
stopped is how it resumes: the pipelines pick up the last checkpoint in its run folder.
Token auth stays on: the client sends the token Ray finds (RAY_AUTH_TOKEN,
RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rayalign.console import say

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
RUN_KEY, RUN_DIR_KEY, COMMAND_KEY = "rayalign_run", "rayalign_run_dir", "rayalign_command"
ACTIVE = ("PENDING", "RUNNING")


class JobError(RuntimeError):
    """The cluster cannot be reached, refuses the token, or has no such job."""


class NoSuchJob(JobError):
    """The cluster answers but does not know the job (or it was never there)."""


@dataclass
class Job:
    id: str
    status: str
    run: str | None
    run_dir: str | None
    command: str
    started: float | None
    ended: float | None
    message: str
    exit_code: int | None


def client(address: str | None):
    """A JobSubmissionClient for `address` (else RAY_ADDRESS, else the local head's dashboard)."""
    import logging

    from ray.job_submission import JobSubmissionClient

    for chatty in ("ray.dashboard.modules.job.sdk", "ray.dashboard.modules.dashboard_sdk", "ray._private.runtime_env"):
        logging.getLogger(chatty).setLevel(logging.WARNING)  # "Uploading package": rayalign says what it sends

    address = address or os.environ.get("RAY_ADDRESS") or DEFAULT_ADDRESS
    token = auth_token()
    try:
        return JobSubmissionClient(address, headers={"Authorization": f"Bearer {token}"} if token else None)
    except Exception as exc:  # ConnectionError, or Ray's RuntimeError for auth and versions
        raise JobError(f"cannot reach the Ray job server at {address}: {exc}") from None


def auth_token() -> str | None:
    """The cluster token where Ray looks for it (RAY_AUTH_TOKEN, the file RAY_AUTH_TOKEN_PATH
    names, ~/.ray/auth_token). Sent whatever RAY_AUTH_MODE says in this shell: Ray's own clients
    send nothing unless it is `token`, and a head started with auth on then refuses them."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return None
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    try:
        return path.read_text().strip() or None
    except OSError:
        if os.environ.get("RAY_AUTH_TOKEN_PATH"):
            raise JobError(f"RAY_AUTH_TOKEN_PATH={path}: cannot read the token file") from None
        return None


def submit(jobs, staged, entrypoint_python: str = "python") -> str:
    """Send a staged run; refuse while another job of the same run is active."""
    for job in list_jobs(jobs):
        if job.run_dir == staged.run_dir and job.status in ACTIVE:
            raise JobError(f"run {staged.config.name} is still going as job {job.id} ({job.status}); "
                           f"stop it first: rayalign jobs stop {job.id}")
    import shlex

    entrypoint = shlex.join([entrypoint_python, "-m", "rayalign.cli", *staged.argv])
    submission_id = f"rayalign-{staged.config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    metadata = {RUN_KEY: staged.config.name, RUN_DIR_KEY: staged.run_dir,
                COMMAND_KEY: " ".join(staged.argv[: staged.argv.index("--config")])}
    try:
        return jobs.submit_job(entrypoint=entrypoint, submission_id=submission_id, metadata=metadata,
                               runtime_env={"working_dir": str(staged.workdir),
                                            "env_vars": {"PYTHONUNBUFFERED": "1"}})
    except Exception as exc:
        raise JobError(f"the job server refused the job: {exc}") from None


def list_jobs(jobs) -> list[Job]:
    """Every job the cluster remembers, oldest first."""
    try:
        details = jobs.list_jobs()
    except Exception as exc:
        raise JobError(f"cannot list jobs: {exc}") from None
    found = [_job(d) for d in details if d.submission_id]
    return sorted(found, key=lambda job: job.started or 0)


def find(jobs, name: str) -> Job:
    """A job by submission id, or the newest job of a run by the run's name."""
    found = list_jobs(jobs)
    for job in found:
        if job.id == name:
            return job
    of_run = [job for job in found if job.run == name]
    if not of_run:
        raise NoSuchJob(f"no job or run named {name!r} on this cluster (rayalign jobs list shows them)")
    return of_run[-1]


def follow(jobs, job_id: str) -> Job | None:
    """Stream the job's logs until it ends; Ctrl-C detaches (None) and leaves the job running."""
    async def tail():
        async for lines in jobs.tail_job_logs(job_id):
            sys.stdout.write(lines)
            sys.stdout.flush()

    try:
        asyncio.run(tail())
    except KeyboardInterrupt:
        say(f"[jobs] detached; {job_id} goes on (rayalign jobs logs {job_id} --follow, "
            f"rayalign jobs stop {job_id})")
        return None
    return wait(jobs, job_id)


def wait(jobs, job_id: str, timeout_s: float | None = None) -> Job:
    """The job once it has ended (its logs may end a moment before its status does)."""
    deadline = None if timeout_s is None else time.time() + timeout_s
    while True:
        job = _job(jobs.get_job_info(job_id))
        if job.status not in ACTIVE or (deadline and time.time() > deadline):
            return job
        time.sleep(0.5)


def exit_code(job: Job) -> int:
    """The job's exit code: its driver's when Ray knows it, else 0 for success, 1 otherwise."""
    if job.exit_code is not None:
        return job.exit_code
    return 0 if job.status == "SUCCEEDED" else 1


def _job(details) -> Job:
    metadata = details.metadata or {}
    seconds = (lambda ms: ms / 1000 if ms else None)
    return Job(id=details.submission_id or details.job_id, status=str(getattr(details.status, "value", details.status)),
               run=metadata.get(RUN_KEY), run_dir=metadata.get(RUN_DIR_KEY),
               command=metadata.get(COMMAND_KEY) or details.entrypoint, started=seconds(details.start_time),
               ended=seconds(details.end_time), message=details.message or "",
               exit_code=getattr(details, "driver_exit_code", None))
