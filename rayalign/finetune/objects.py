"""The service's rows as OpenAI's JSON objects: file, fine_tuning.job, its events, checkpoints, lists."""

from __future__ import annotations

from rayalign.finetune.db import Checkpoint, Job, JobEvent, StoredFile
from rayalign.finetune.store import Page

SUPERVISED_DEFAULTS = {"n_epochs": "auto", "batch_size": "auto", "learning_rate_multiplier": "auto"}


def file_object(row: StoredFile) -> dict:
    return {"id": row.id, "object": "file", "bytes": row.bytes, "created_at": row.created_at,
            "filename": row.filename, "purpose": row.purpose, "status": "processed", "expires_at": None,
            "status_details": None}


def deleted_file(file_id: str) -> dict:
    return {"id": file_id, "object": "file", "deleted": True}


def fine_tuned_name(job: Job) -> str:
    """OpenAI's form `ft:<base>:<suffix>:<id>`; the id part is the job id's random tail."""
    return f"ft:{job.model}:{job.suffix or ''}:{job.id.removeprefix('ftjob-')}"


def job_object(job: Job) -> dict:
    method = job.method
    settings = method.get(method["type"]) or {}
    hyperparameters = {**(SUPERVISED_DEFAULTS if method["type"] == "supervised" else {}),
                       **settings.get("hyperparameters", {})}
    return {"id": job.id, "object": "fine_tuning.job", "created_at": job.created_at, "model": job.model,
            "organization_id": job.tenant, "status": job.status, "training_file": job.training_file,
            "validation_file": job.validation_file, "fine_tuned_model": job.fine_tuned_model,
            "finished_at": job.finished_at, "trained_tokens": job.trained_tokens, "result_files": job.result_files,
            "seed": job.seed, "error": job.error, "hyperparameters": hyperparameters, "method": method,
            "metadata": job.user_metadata, "estimated_finish": None, "integrations": []}


def event_object(row: JobEvent) -> dict:
    return {"id": row.id, "object": "fine_tuning.job.event", "created_at": row.created_at, "level": row.level,
            "message": row.message, "type": row.type, "data": row.data}


def checkpoint_object(row: Checkpoint) -> dict:
    return {"id": row.id, "object": "fine_tuning.job.checkpoint", "created_at": row.created_at,
            "fine_tuning_job_id": row.job_id, "step_number": row.step_number, "metrics": row.metrics,
            "fine_tuned_model_checkpoint": row.model}


def list_object(page: Page, shape) -> dict:
    data = [shape(item) for item in page.items]
    return {"object": "list", "data": data, "has_more": page.has_more,
            "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}
