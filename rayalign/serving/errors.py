"""Every error the ingress answers, in the OpenAI format:
`{"error": {"message", "type", "param", "code"}}` with the HTTP status as `code` (401: "invalid_api_key",
413: "request_too_large"). A 5xx carries a generic message and the request id, never the server's
internals, and a body over the limit is refused before it is read whole (guards.py).

ray.serve.llm's own handlers leave gaps, closed here: an unknown model answers FastAPI's
`{"detail": ...}`, as does a body that is not UTF-8 (FastAPI raises Starlette's HTTPException for
it, which a handler of FastAPI's HTTPException does not catch); malformed JSON fails while
reporting the body (bytes) and becomes a 500; and a request whose replica died under it (killed,
out of memory) is a 500 whose message carries Ray's own ("The actor died unexpectedly...", class
name, actor id, pid, address), where it is a 503 with `Retry-After` and no internals: Serve
replaces the replica, and a retry goes to a live one (OpenAI's clients retry a 503 by themselves).
Measured by bench/replica_kill.py.
"""

from __future__ import annotations

import json
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from ray.exceptions import RayActorError
from ray.llm._internal.serve.core.configs.openai_api_models import OpenAIHTTPException
from starlette.exceptions import HTTPException  # FastAPI's own subclasses it; FastAPI raises both
from starlette.responses import JSONResponse


TYPES = {400: "BadRequestError", 401: "AuthenticationError", 404: "NotFoundError", 408: "TimeoutError",
         503: "ServiceUnavailableError"}
RETRY_AFTER_S = 1
# Set by the handlers here on a 5xx whose message is written for the client (the shield passes
# it on and drops the header); any other 5xx is made generic.
PUBLIC = b"x-rayalign-public-error"


def error_content(message: str, status: int, type_: str | None = None, code: int | str | None = None) -> dict:
    return {"error": {"message": message, "type": type_ or TYPES.get(status, "InternalServerError"),
                      "param": None, "code": status if code is None else code}}


def error_bytes(message: str, status: int, type_: str | None = None, code: int | str | None = None) -> bytes:
    return json.dumps(error_content(message, status, type_, code)).encode()


def _response(request: Request, message: str, status: int, type_: str | None = None) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None) or request.headers.get("x-request-id")
    if request_id:
        message = f"{message} (request id {request_id})"
    return JSONResponse(error_content(message, status, type_), status_code=status)


async def _http_exception(request: Request, exc: HTTPException) -> JSONResponse:
    return _response(request, str(exc.detail), exc.status_code)


# ray.serve.llm words an engine's error "Message: <m> (Request ID: ..), Internal exception: <m again>,
# original exception: <str(e)>", <m> often led by the exception's dotted class name
ENGINE_WORDING = re.compile(r"^Message: (?P<message>.*?)(?: \(Request ID: [^)]*\))?, Internal exception: ", re.S)
DOTTED_CLASS = re.compile(r"^(?:[A-Za-z_]\w*\.)+[A-Za-z_]\w*: ")


def client_message(message: str) -> str:
    """An engine's error message as the client reads it: once, without the exception's class path."""
    engine = ENGINE_WORDING.match(message)
    if engine:
        message = engine.group("message")
    return DOTTED_CLASS.sub("", message)


async def _openai_exception(request: Request, exc: OpenAIHTTPException) -> JSONResponse:
    # the engine's exception class names (e.g. VLLMValidationError) give way to OpenAI-style types
    type_ = TYPES.get(exc.status_code) or (None if exc.type == "Unknown" else exc.type)
    return _response(request, client_message(exc.message), exc.status_code, type_)


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
                         for e in exc.errors())
    return _response(request, f"invalid request body: {problems or 'not valid JSON'}", 400)


async def _replica_died(request: Request, exc: RayActorError) -> JSONResponse:
    # Ray's message names actor ids, pids and addresses: internals, not for the client.
    answer = _response(request, "the model replica serving this request stopped before it answered; "
                       "retry the request", 503)
    answer.headers["Retry-After"] = str(RETRY_AFTER_S)
    answer.headers[PUBLIC.decode()] = "1"
    return answer


def add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, _http_exception)
    app.add_exception_handler(OpenAIHTTPException, _openai_exception)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(RayActorError, _replica_died)

