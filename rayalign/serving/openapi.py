"""The OpenAPI schema the ingress publishes at /openapi.json (behind the API key, like every route):
FastAPI's, with what it cannot see added.

- Every error a route answers, as OpenAI's error body (`ErrorResponse`), by status: what every
  route may answer (400 bad request, 401 no or wrong key, 404, 413 body over the limit, 500) and
  what some add (408 and 503 for requests to an engine, 429 a tenant's fine-tuning limit). FastAPI's
  422 is gone: a body that does not validate is a 400 here (rayalign.serving.errors).
- The request bodies of the fine-tuning routes, which read the request themselves: the upload
  (multipart `file` + `purpose`) and the job (JSON).
- Streaming answers (`text/event-stream`) of chat and completions; raw file content.
- The bearer-key security scheme.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

ERROR_RESPONSE = {
    "type": "object", "required": ["error"],
    "properties": {"error": {
        "type": "object", "required": ["message", "type", "param", "code"],
        "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                       "param": {"type": ["string", "null"]}, "code": {"type": ["string", "integer", "null"]}}}},
}
DESCRIPTIONS = {400: "Bad request", 401: "Missing or invalid API key", 404: "Not found", 408: "Timed out",
                413: "Request body over the limit", 429: "A limit of the tenant reached", 500: "Internal error",
                503: "No replica available"}
EVERY_ROUTE = (400, 401, 404, 413, 500)
ENGINE_ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/audio/transcriptions",
                 "/v1/score", "/tokenize", "/detokenize", "/v1/judge", "/v1/rewards")
FILE_UPLOAD = {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file", "purpose"],
    "properties": {"file": {"type": "string", "format": "binary"}, "purpose": {"type": "string"}}}}}
JOB = {"application/json": {"schema": {
    "type": "object", "required": ["model", "training_file"],
    "properties": {"model": {"type": "string"}, "training_file": {"type": "string"},
                   "validation_file": {"type": ["string", "null"]}, "suffix": {"type": ["string", "null"]},
                   "seed": {"type": ["integer", "null"]}, "method": {"type": ["object", "null"]},
                   "hyperparameters": {"type": ["object", "null"]}, "metadata": {"type": ["object", "null"]},
                   "rayalign": {"type": ["object", "null"]}}}}}


def _error(status: int) -> dict:
    return {"description": DESCRIPTIONS[status],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}


def document(schema: dict[str, Any]) -> dict[str, Any]:
    """FastAPI's schema of the ingress, completed as above (in place; returned)."""
    schema.setdefault("components", {}).setdefault("schemas", {})["ErrorResponse"] = ERROR_RESPONSE
    schema["components"]["schemas"].pop("HTTPValidationError", None)
    schema["components"]["schemas"].pop("ValidationError", None)
    schema["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    schema["security"] = [{"bearer": []}]
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            statuses = list(EVERY_ROUTE)
            if path in ENGINE_ROUTES:
                statuses += [408, 503]
            if path.startswith("/v1/files") or path.startswith("/v1/fine_tuning"):
                statuses.append(429)
            for status in statuses:
                responses[str(status)] = _error(status)
            if path in ("/v1/chat/completions", "/v1/completions"):
                responses["200"].setdefault("content", {})["text/event-stream"] = {"schema": {"type": "string"}}
            if path == "/v1/files/{file_id}/content":
                responses["200"]["content"] = {"application/octet-stream": {"schema": {"type": "string",
                                                                                       "format": "binary"}}}
            if (method, path) == ("post", "/v1/files"):
                operation["requestBody"] = {"required": True, "content": FILE_UPLOAD}
            if (method, path) == ("post", "/v1/fine_tuning/jobs"):
                operation["requestBody"] = {"required": True, "content": JOB}
    return schema


def publish(app: FastAPI) -> None:
    """Serve the completed schema at app's /openapi.json (computed on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(get_openapi(title="rayalign", version="1", routes=app.routes,
                                                      description="OpenAI-compatible serving of rayalign runs"))
        return app.openapi_schema

    app.openapi = openapi
