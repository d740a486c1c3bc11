"""The fine-tuning service's tables (SQLAlchemy 2.0 ORM) and the database they live in.

SQLite (a file; the default) for one service replica, PostgreSQL (`postgresql+psycopg://...`)
for several. Every table has an integer `seq` that only grows: lists are ordered by it
(newest first, as OpenAI's are) and paged with `after=<id>`. The public ids are random strings.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Integer, String, Text, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# BIGINT on PostgreSQL; INTEGER (the row id, so it autoincrements) on SQLite.
Seq = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Keyed:
    """The growing `seq` that orders and pages a table, and the public random `id`."""

    seq: Mapped[int] = mapped_column(Seq, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)


class StoredFile(Keyed, Base):
    __tablename__ = "files"
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    purpose: Mapped[str] = mapped_column(String(32))
    bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)
    path: Mapped[str] = mapped_column(Text)


class Job(Keyed, Base):
    __tablename__ = "jobs"
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    model: Mapped[str] = mapped_column(String(255))
    training_file: Mapped[str] = mapped_column(String(40))
    validation_file: Mapped[str | None] = mapped_column(String(40))
    suffix: Mapped[str | None] = mapped_column(String(64))
    seed: Mapped[int] = mapped_column(BigInteger)
    method: Mapped[dict[str, Any]]
    user_metadata: Mapped[dict[str, Any] | None]
    status: Mapped[str] = mapped_column(String(20), index=True)
    error: Mapped[dict[str, Any] | None]
    fine_tuned_model: Mapped[str | None] = mapped_column(String(255))
    trained_tokens: Mapped[int | None] = mapped_column(BigInteger)
    result_files: Mapped[list[Any]]
    created_at: Mapped[int] = mapped_column(BigInteger)
    finished_at: Mapped[int | None] = mapped_column(BigInteger)
    # The job runner's own: the Ray job's submission id, the run folder, metrics lines turned into events.
    ray_job: Mapped[str | None] = mapped_column(String(128))
    run_dir: Mapped[str | None] = mapped_column(Text)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    stopped: Mapped[bool] = mapped_column(Boolean, default=False)


class JobEvent(Keyed, Base):
    __tablename__ = "job_events"
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    level: Mapped[str] = mapped_column(String(8))
    message: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(8))
    data: Mapped[dict[str, Any] | None]


class Checkpoint(Keyed, Base):
    __tablename__ = "job_checkpoints"
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    step_number: Mapped[int] = mapped_column(BigInteger)
    metrics: Mapped[dict[str, Any]]
    model: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(Text)


def connect(url: str) -> Engine:
    """An engine on `url` with the tables created (idempotent). SQLite gets write-ahead logging
    and a busy timeout, so two processes on one file wait for each other instead of failing."""
    sqlite = url.startswith("sqlite")
    engine = create_engine(url, connect_args={"timeout": 30} if sqlite else {}, pool_pre_ping=not sqlite)
    if sqlite:
        @event.listens_for(engine, "connect")
        def _pragmas(connection, _record):
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()
    Base.metadata.create_all(engine)
    return engine
