"""OpenAI's files and fine-tuning jobs API, per tenant, as routes of the serving app.

    POST   /v1/files                                 upload (multipart: file, purpose=fine-tune), checked
    GET    /v1/files[?purpose&limit&after]           list, newest first
    GET    /v1/files/{id}   /v1/files/{id}/content   DELETE /v1/files/{id}
    POST   /v1/fine_tuning/jobs                      create (model, training_file, method, ...)
    GET    /v1/fine_tuning/jobs[?limit&after]        list      GET /v1/fine_tuning/jobs/{id}
    POST   /v1/fine_tuning/jobs/{id}/cancel   .../{id}/pause   .../{id}/resume
    GET    /v1/fine_tuning/jobs/{id}/events          GET /v1/fine_tuning/jobs/{id}/checkpoints

The tenant is the API key's (rayalign.serving.tenants.request_tenant); every read is by
(tenant, id), so another tenant's id is a 404. Uploads and jobs are checked here, so a bad
file or job is a 400 in OpenAI's error body naming the line, field or parameter. The routes
only read and write the state (rayalign/finetune/store.py); the job runner
(rayalign/serving/finetune_runner.py) does the work.
"""

from __future__ import annotations

import asyncio
import functools
import json
import tempfile
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile

from rayalign.data.openai_files import check_file, convert_file
from rayalign.data.readers import DataError
from rayalign.finetune import objects
from rayalign.finetune.errors import ServiceError
from rayalign.finetune.recipes import check_method
from rayalign.finetune.runner import run_name
from rayalign.finetune.store import Limits, Store
from rayalign.serving.settings import FineTuneSettings
from rayalign.serving.tenants import request_tenant

SUFFIX_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_")


class FineTuning:
    """The state of the fine-tuning service in this process, opened on first use."""

    def __init__(self, settings: FineTuneSettings, bases: dict[str, str]):
        self.settings, self.bases = settings, bases
        self.storage = Path(settings.storage).resolve()
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            self.storage.mkdir(parents=True, exist_ok=True)
            url = self.settings.database_url or f"sqlite:///{self.storage / 'finetune.db'}"
            limits = Limits(self.settings.max_file_bytes, self.settings.max_stored_bytes, self.settings.max_active_jobs)
            self._store = Store(url, self.storage, limits)
        return self._store

    @property
    def runs_dir(self) -> str:
        return str(self.storage / "runs")

    def adapter_for(self, tenant: str, name: str) -> str:
        """The adapter id `<base>:ft-<tail>` of the tenant's fine-tuned model `name`; NotFound otherwise."""
        job = self.store.fine_tuned(tenant, name)
        return f"{job.model}:{run_name(job)}"

    def owns_adapter(self, tenant: str, adapter: str) -> bool:
        return any(f"{job.model}:{run_name(job)}" == adapter for job in self.store.fine_tuned_models(tenant))

    def served(self, tenant: str) -> dict[str, str]:
        """The tenant's fine-tuned models that are LoRA adapters (served at once): name -> base. A
        full-weights result stays in its run folder until it is deployed as a model of its own."""
        return {job.fine_tuned_model: job.model for job in self.store.fine_tuned_models(tenant)
                if (Path(self.runs_dir) / run_name(job) / "final" / "adapter_config.json").is_file()}


@functools.lru_cache(maxsize=4)
def _service(settings_json: str, bases_json: str) -> FineTuning:
    return FineTuning(FineTuneSettings.model_validate_json(settings_json), json.loads(bases_json))


def service(settings: FineTuneSettings, bases: dict[str, str]) -> FineTuning:
    """One FineTuning per process and settings (the ingress and its routes share it)."""
    return _service(settings.model_dump_json(), json.dumps(bases, sort_keys=True))


async def _service_error(_request: Request, exc: ServiceError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status)


def add_finetune_routes(app: FastAPI, settings: FineTuneSettings, bases: dict[str, str]) -> None:
    """The routes above on `app`; `bases`: the base models jobs may tune (served name -> recipe name)."""
    app.add_exception_handler(ServiceError, _service_error)
    app.include_router(_router(settings, bases))


def _router(settings: FineTuneSettings, bases: dict[str, str]) -> APIRouter:
    router = APIRouter(prefix="/v1")

    def state() -> Store:
        return service(settings, bases).store

    @router.post("/files")
    async def create_file(request: Request) -> JSONResponse:
        form = await request.form(max_part_size=settings.max_file_bytes + 1)
        upload, purpose = form.get("file"), form.get("purpose")
        if purpose != "fine-tune":
            raise ServiceError(f"purpose {purpose!r} is not supported; this service takes 'fine-tune' files",
                               "invalid_purpose", "purpose")
        if not isinstance(upload, UploadFile):
            raise ServiceError("no file in the upload (multipart field 'file')", "missing_file", "file")
        data = await upload.read(settings.max_file_bytes + 1)
        if len(data) > settings.max_file_bytes:
            raise ServiceError(f"the file is over the limit of {settings.max_file_bytes} bytes", "file_too_large",
                               "file")
        name = Path(upload.filename or "upload.jsonl").name
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "upload.jsonl"
            path.write_bytes(data)
            try:
                await asyncio.to_thread(check_file, str(path), name)  # a big file: not on the event loop
            except DataError as exc:
                raise ServiceError(str(exc).replace(str(path), name), "invalid_file", "file") from None
        return JSONResponse(objects.file_object(state().create_file(request_tenant(), name, purpose, data)))

    @router.get("/files")
    async def list_files(purpose: str | None = None, limit: int = 100, after: str | None = None) -> JSONResponse:
        page = state().list_files(request_tenant(), purpose, limit=limit, after=after)
        return JSONResponse(objects.list_object(page, objects.file_object))

    @router.get("/files/{file_id}")
    async def retrieve_file(file_id: str) -> JSONResponse:
        return JSONResponse(objects.file_object(state().get_file(request_tenant(), file_id)))

    @router.get("/files/{file_id}/content")
    async def file_content(file_id: str) -> Response:
        return Response(state().file_content(request_tenant(), file_id), media_type="application/octet-stream")

    @router.delete("/files/{file_id}")
    async def delete_file(file_id: str) -> JSONResponse:
        state().delete_file(request_tenant(), file_id)
        return JSONResponse(objects.deleted_file(file_id))

    @router.post("/fine_tuning/jobs")
    async def create_job(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            raise ServiceError("the request body is not valid JSON", "invalid_json") from None
        if not isinstance(body, dict):
            raise ServiceError("the request body must be a JSON object", "invalid_json")
        tenant, store = request_tenant(), state()
        model = body.get("model")
        if not isinstance(model, str) or model not in bases:
            raise ServiceError(f"model {model!r} cannot be fine-tuned here; base models: {', '.join(bases) or 'none'}",
                               "model_not_available", "model")
        method = body.get("method") or {"type": "supervised",
                                        "supervised": {"hyperparameters": body.get("hyperparameters") or {}}}
        method = check_method(method, body.get("rayalign"), settings.python_graders)
        suffix = body.get("suffix")
        if suffix is not None and (not isinstance(suffix, str) or not 0 < len(suffix) <= 64
                                   or not set(suffix) <= SUFFIX_CHARS):
            raise ServiceError("suffix: 1-64 characters of a-z, 0-9, '-' and '_'", "invalid_suffix", "suffix")
        for param in ("training_file", "validation_file"):
            file_id = body.get(param)
            if file_id is None and param == "validation_file":
                continue
            if not isinstance(file_id, str):
                raise ServiceError(f"{param} must be a file id", "invalid_file", param)
            stored = store.get_file(tenant, file_id, param)
            try:
                await asyncio.to_thread(convert_file, stored.path, method["type"], stored.filename)
            except DataError as exc:
                raise ServiceError(f"{param} {file_id}: {str(exc).replace(stored.path, stored.filename)}",
                                   f"invalid_{param}", param) from None
        seed = body.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31):
            raise ServiceError("seed must be an integer from 0 to 2147483647", "invalid_seed", "seed")
        job = store.create_job(tenant, model, body["training_file"], method,
                               validation_file=body.get("validation_file"), suffix=suffix, seed=seed,
                               metadata=body.get("metadata"))
        return JSONResponse(objects.job_object(job))

    @router.get("/fine_tuning/jobs")
    async def list_jobs(limit: int = 20, after: str | None = None) -> JSONResponse:
        page = state().list_jobs(request_tenant(), limit=limit, after=after)
        return JSONResponse(objects.list_object(page, objects.job_object))

    @router.get("/fine_tuning/jobs/{job_id}")
    async def retrieve_job(job_id: str) -> JSONResponse:
        return JSONResponse(objects.job_object(state().get_job(request_tenant(), job_id)))

    @router.post("/fine_tuning/jobs/{job_id}/cancel")
    async def cancel_job(job_id: str) -> JSONResponse:
        return JSONResponse(objects.job_object(state().cancel_job(request_tenant(), job_id)))

    @router.post("/fine_tuning/jobs/{job_id}/pause")
    async def pause_job(job_id: str) -> JSONResponse:
        return JSONResponse(objects.job_object(state().pause_job(request_tenant(), job_id)))

    @router.post("/fine_tuning/jobs/{job_id}/resume")
    async def resume_job(job_id: str) -> JSONResponse:
        return JSONResponse(objects.job_object(state().resume_job(request_tenant(), job_id)))

    @router.get("/fine_tuning/jobs/{job_id}/events")
    async def list_events(job_id: str, limit: int = 20, after: str | None = None) -> JSONResponse:
        page = state().list_events(request_tenant(), job_id, limit=limit, after=after)
        return JSONResponse(objects.list_object(page, objects.event_object))

    @router.get("/fine_tuning/jobs/{job_id}/checkpoints")
    async def list_checkpoints(job_id: str, limit: int = 10, after: str | None = None) -> JSONResponse:
        page = state().list_checkpoints(request_tenant(), job_id, limit=limit, after=after)
        return JSONResponse(objects.list_object(page, objects.checkpoint_object))

    return router
