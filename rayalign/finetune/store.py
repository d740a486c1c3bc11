"""What the service does to its state: files, jobs, their events and checkpoints, per tenant.

Every read a client asks for is by (tenant, id): an id that is unknown, deleted or another
tenant's is the same NotFound. Uploaded bytes go to `<storage>/files/<tenant>/<id>` (written to
a temporary name, fsync'd, renamed) before the row that names them is committed, so a crash
leaves no row without its bytes. Per-tenant limits are checked and the row written in one
transaction under the tenant's lock (PostgreSQL). Status changes are compare-and-set updates, so two service
replicas (or a replica and the job runner) never both move a job. A new Store on the same
database URL and storage folder sees everything: that is what survives a restart.
"""

from __future__ import annotations

import re
import secrets
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from rayalign.finetune.db import Checkpoint, Job, JobEvent, StoredFile, connect
from rayalign.finetune.errors import LimitReached, NotFound, ServiceError
from rayalign.runs import write_atomic

ACTIVE = ("validating_files", "queued", "running")
TERMINAL = ("succeeded", "failed", "cancelled")
NEXT = {"validating_files": ("queued", "failed", "cancelled"), "queued": ("running", "failed", "cancelled"),
        "running": ("succeeded", "failed", "cancelled", "paused"), "paused": ("queued", "cancelled")}
UNFINISHED = (*ACTIVE, "paused")  # what counts against a tenant's limit on jobs
TENANT = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")  # names folders on the storage: no dots, no slashes


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int = 512 * 2**20
    max_stored_bytes: int = 8 * 2**30   # per tenant
    max_active_jobs: int = 2            # per tenant: validating_files, queued or running


@dataclass(frozen=True)
class Page:
    items: list
    has_more: bool


def check_tenant(name: str) -> str:
    """`name` if it is a valid tenant name, else ValueError saying what one is."""
    if not isinstance(name, str) or not TENANT.fullmatch(name):
        raise ValueError(f"tenant {name!r}: a tenant is 1-64 characters of a-z, 0-9, '-' and '_', "
                         "starting with a letter or digit")
    return name


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


class Store:
    def __init__(self, url: str, storage: str | Path, limits: Limits = Limits()):
        self.engine = connect(url)
        self.storage, self.limits = Path(storage), limits

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    # ------------------------------------------------------------------ files

    def create_file(self, tenant: str, filename: str, purpose: str, data: bytes) -> StoredFile:
        check_tenant(tenant)
        if len(data) > self.limits.max_file_bytes:
            raise ServiceError(f"the file is {len(data)} bytes; the limit is {self.limits.max_file_bytes}",
                               "file_too_large", "file")
        row = StoredFile(id=new_id("file"), tenant=tenant, filename=filename, purpose=purpose, bytes=len(data),
                         created_at=int(time.time()), path="")
        path = self.storage / "files" / tenant / f"{row.id}.jsonl"
        write_atomic(path, data)
        row.path = str(path)
        try:
            with self.session() as session, session.begin():
                self._lock_tenant(session, tenant)
                stored = session.scalar(select(func.coalesce(func.sum(StoredFile.bytes), 0))
                                        .where(StoredFile.tenant == tenant))
                if stored + len(data) > self.limits.max_stored_bytes:
                    raise LimitReached(f"storing {len(data)} more bytes would pass this tenant's limit of "
                                       f"{self.limits.max_stored_bytes} (now {stored}); delete files first",
                                       "storage_limit_reached", "file")
                session.add(row)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return row

    def get_file(self, tenant: str, file_id: str, param: str = "id") -> StoredFile:
        query = select(StoredFile).where(StoredFile.id == file_id, StoredFile.tenant == tenant)
        return self._one(query, "File object", file_id, param)

    def file_content(self, tenant: str, file_id: str) -> bytes:
        return Path(self.get_file(tenant, file_id).path).read_bytes()

    def list_files(self, tenant: str, purpose: str | None = None, limit: int = 100,
                   after: str | None = None) -> Page:
        query = select(StoredFile).where(StoredFile.tenant == tenant)
        if purpose:
            query = query.where(StoredFile.purpose == purpose)
        return self._page(query, StoredFile, after and self.get_file(tenant, after, "after").seq, limit)

    def delete_file(self, tenant: str, file_id: str) -> None:
        row = self.get_file(tenant, file_id)
        with self.session() as session, session.begin():
            session.execute(StoredFile.__table__.delete().where(StoredFile.seq == row.seq))
        Path(row.path).unlink(missing_ok=True)

    # ------------------------------------------------------------------ jobs

    def create_job(self, tenant: str, model: str, training_file: str, method: dict, *,
                   validation_file: str | None = None, suffix: str | None = None, seed: int | None = None,
                   metadata: dict | None = None) -> Job:
        self.get_file(tenant, training_file, "training_file")
        if validation_file:
            self.get_file(tenant, validation_file, "validation_file")
        job = Job(id=new_id("ftjob"), tenant=tenant, model=model, training_file=training_file,
                  validation_file=validation_file, suffix=suffix,
                  seed=seed if seed is not None else secrets.randbelow(2**31), method=method,
                  user_metadata=metadata, status="validating_files", error=None, fine_tuned_model=None,
                  trained_tokens=None, result_files=[], created_at=int(time.time()), finished_at=None,
                  progress=0, stopped=False)
        with self.session() as session, session.begin():
            self._lock_tenant(session, tenant)
            active = session.scalar(select(func.count()).select_from(Job)
                                    .where(Job.tenant == tenant, Job.status.in_(UNFINISHED)))
            if active >= self.limits.max_active_jobs:
                raise LimitReached(f"this tenant has {active} jobs validating, queued, running or paused; the limit is "
                                   f"{self.limits.max_active_jobs}", "too_many_active_jobs")
            session.add(job)
        return job

    def get_job(self, tenant: str, job_id: str, param: str = "id") -> Job:
        return self._one(select(Job).where(Job.id == job_id, Job.tenant == tenant), "fine-tuning job", job_id, param)

    def job(self, job_id: str) -> Job:
        """A job by id alone: for the job runner, never for a client's request."""
        return self._one(select(Job).where(Job.id == job_id), "fine-tuning job", job_id)

    def list_jobs(self, tenant: str, limit: int = 20, after: str | None = None) -> Page:
        return self._page(select(Job).where(Job.tenant == tenant), Job,
                          after and self.get_job(tenant, after, "after").seq, limit)

    def active_jobs(self) -> list[Job]:
        """Every job not yet finished, oldest first: what a restarted runner picks up again."""
        with self.session() as session:
            return list(session.scalars(select(Job).where(Job.status.in_(ACTIVE)).order_by(Job.seq)))

    def move(self, job_id: str, status: str, **fields) -> Job:
        """Move a job to `status` (and set `fields`: error, fine_tuned_model, trained_tokens,
        result_files) if its lifecycle allows; a job another writer moved first is an error."""
        current = self.job(job_id)
        if status not in NEXT.get(current.status, ()):
            raise ServiceError(f"fine-tuning job {job_id} is {current.status}; it cannot become {status}",
                               "invalid_status_change")
        if status in TERMINAL:
            fields["finished_at"] = int(time.time())
        with self.session() as session, session.begin():
            moved = session.execute(update(Job).where(Job.id == job_id, Job.status == current.status)
                                    .values(status=status, **fields)).rowcount
        if not moved:
            raise ServiceError(f"fine-tuning job {job_id} changed while it was being moved to {status}",
                               "conflict")
        return self.job(job_id)

    def note(self, job_id: str, **fields) -> None:
        """Record the runner's own fields (ray_job, run_dir, progress) without a status change."""
        with self.session() as session, session.begin():
            session.execute(update(Job).where(Job.id == job_id).values(**fields))

    def to_stop(self) -> list[Job]:
        """Cancelled or paused jobs whose Ray job the runner has not stopped yet."""
        with self.session() as session:
            return list(session.scalars(select(Job).where(Job.status.in_(("cancelled", "paused")),
                                                          Job.ray_job.is_not(None), Job.stopped.is_(False))))

    def checkpoints_of(self, job_id: str) -> list[Checkpoint]:
        with self.session() as session:
            return list(session.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id)))

    def fine_tuned_models(self, tenant: str) -> list[Job]:
        """The tenant's succeeded jobs, oldest first: the models it may call."""
        with self.session() as session:
            return list(session.scalars(select(Job).where(Job.tenant == tenant, Job.status == "succeeded")
                                        .order_by(Job.seq)))

    def fine_tuned(self, tenant: str, name: str) -> Job:
        """The tenant's succeeded job whose model is `name`; NotFound for any other tenant's."""
        query = select(Job).where(Job.tenant == tenant, Job.fine_tuned_model == name, Job.status == "succeeded")
        return self._one(query, "model", name, "model")

    def cancel_job(self, tenant: str, job_id: str) -> Job:
        job = self.get_job(tenant, job_id)
        if job.status in TERMINAL:
            raise ServiceError(f"fine-tuning job {job_id} is already {job.status}", "job_finished")
        return self.move(job_id, "cancelled")

    def pause_job(self, tenant: str, job_id: str) -> Job:
        """A running job stops at once and keeps its checkpoints; resume_job runs it on from the last."""
        return self._client_move(tenant, job_id, "running", "paused", "paused")

    def resume_job(self, tenant: str, job_id: str) -> Job:
        return self._client_move(tenant, job_id, "paused", "queued", "resumed")

    def _client_move(self, tenant: str, job_id: str, source: str, target: str, verb: str) -> Job:
        job = self.get_job(tenant, job_id)
        if job.status != source:
            raise ServiceError(f"fine-tuning job {job_id} is {job.status}; only a {source} job can be {verb}",
                               "invalid_status_change")
        return self.move(job_id, target)

    # ------------------------------------------------------------------ events and checkpoints

    def add_event(self, job_id: str, message: str, level: str = "info", data: dict | None = None) -> JobEvent:
        row = JobEvent(id=new_id("ftevent"), job_id=job_id, created_at=int(time.time()), level=level,
                       message=message, type="metrics" if data else "message", data=data)
        return self._add(row)

    def list_events(self, tenant: str, job_id: str, limit: int = 20, after: str | None = None) -> Page:
        self.get_job(tenant, job_id)
        query = select(JobEvent).where(JobEvent.job_id == job_id)
        return self._page(query, JobEvent, after and self._seq(JobEvent, job_id, after), limit)

    def add_checkpoint(self, job_id: str, step: int, metrics: dict, model: str, path: str) -> Checkpoint:
        row = Checkpoint(id=new_id("ftckpt"), job_id=job_id, created_at=int(time.time()), step_number=step,
                         metrics=metrics, model=model, path=path)
        return self._add(row)

    def list_checkpoints(self, tenant: str, job_id: str, limit: int = 10, after: str | None = None) -> Page:
        self.get_job(tenant, job_id)
        query = select(Checkpoint).where(Checkpoint.job_id == job_id)
        return self._page(query, Checkpoint, after and self._seq(Checkpoint, job_id, after), limit)

    # ------------------------------------------------------------------ shared

    def _lock_tenant(self, session: Session, tenant: str) -> None:
        """Hold a lock until the transaction ends, so that two writers checking a limit at once see
        each other's rows: the tenant's advisory lock on PostgreSQL; on SQLite the database's write
        lock, taken by a write that changes nothing, before anything is read."""
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": zlib.crc32(tenant.encode())})
        else:
            session.execute(text("UPDATE files SET seq = seq WHERE 0 = 1"))

    def _add(self, row):
        with self.session() as session, session.begin():
            session.add(row)
        return row

    def _one(self, query, what: str, object_id: str, param: str = "id"):
        with self.session() as session:
            found = session.scalar(query)
        if found is None:
            raise NotFound(what, object_id, param)
        return found

    def _seq(self, table, job_id: str, after: str) -> int:
        return self._one(select(table.seq).where(table.id == after, table.job_id == job_id), "cursor", after, "after")

    def _page(self, query, table, after_seq: int | None, limit: int) -> Page:
        if not 1 <= limit <= 100:
            raise ServiceError(f"limit is {limit}; it must be between 1 and 100", "invalid_limit", "limit")
        if after_seq:
            query = query.where(table.seq < after_seq)
        with self.session() as session:
            rows = list(session.scalars(query.order_by(table.seq.desc()).limit(limit + 1)))
        return Page(rows[:limit], len(rows) > limit)

