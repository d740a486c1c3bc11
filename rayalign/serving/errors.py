"""Every error the ingress answers, in the OpenAI format:
`{"error": {"message", "type", "param", "code"}}` with the HTTP status as `code` (401: "invalid_api_key",
413: "request_too_large"). A 5xx carries a generic message and the request id, never the server's
internals (InternalErrorShield); a body over the limit is refused before it is read whole (BodyLimit).

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
import logging
import re
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from ray.exceptions import RayActorError
from ray.llm._internal.serve.core.configs.openai_api_models import OpenAIHTTPException
from starlette.exceptions import HTTPException  # FastAPI's own subclasses it; FastAPI raises both
from starlette.responses import JSONResponse

logger = logging.getLogger("ray.serve")

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


# ---------------------------------------------------------------------- the ASGI guards
# Both sit in front of the app (outside ray.serve.llm's own exception middleware), as plain ASGI
# middleware: they see every response, whichever layer made it.

INTERNAL_TYPES = {500: "InternalServerError", 502: "BadGatewayError", 503: "ServiceUnavailableError",
                  504: "TimeoutError"}


def _request_id(scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id" and value:
            return value.decode(errors="replace")
    return "-"


async def _send_error(send, status: int, content: dict, request_id: str, extra=()) -> None:
    body = json.dumps(content).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()), *extra]})
    await send({"type": "http.response.body", "body": body})


class InternalErrorShield:
    """Every 5xx answer becomes OpenAI's error body with a generic message and the request id (but
    one written here for the client, marked PUBLIC, passes as it is; a 4xx
    in ray.serve.llm's engine wording is made plain, see client_message); what
    the inner layers said (ray.serve.llm puts the exception's text, a Ray traceback included, into
    its 500s) and any exception that escapes them go to the server log under that id. Nothing of
    the server's internals (tracebacks, module or class names) reaches the client."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = _request_id(scope)
        if request_id == "-":  # Serve's proxy sets one; without it (a bare ASGI server), make one
            request_id = uuid.uuid4().hex
            scope = {**scope, "headers": [*scope.get("headers", []), (b"x-request-id", request_id.encode())]}
        started, held, parts = [False], [None], []

        async def guarded_send(message):
            if message["type"] == "http.response.start":
                if message["status"] >= 400:  # an error: small, held whole to be checked
                    held[0] = message
                    return
                started[0] = True
            elif message["type"] == "http.response.body" and held[0] is not None:
                parts.append(message.get("body", b""))
                if not message.get("more_body", False):
                    headers = held[0].get("headers", [])
                    if any(k.lower() == PUBLIC for k, _ in headers):  # written for the client
                        await send({**held[0], "headers": [(k, v) for k, v in headers if k.lower() != PUBLIC]})
                        await send({"type": "http.response.body", "body": b"".join(parts)})
                    elif held[0]["status"] >= 500:
                        await self._generic(send, held[0]["status"], request_id, b"".join(parts))
                    else:
                        await self._client_error(send, held[0], b"".join(parts))
                    started[0] = True
                return
            await send(message)

        try:
            await self.app(scope, receive, guarded_send)
        except Exception:
            logger.exception("request %s failed", request_id)
            if not started[0]:
                await self._generic(send, 500, request_id, b"")
            # else the response is under way: the client sees the stream end early

    @staticmethod
    async def _client_error(send, start: dict, body: bytes) -> None:
        """A 4xx as made, but for an engine's message in ray.serve.llm's wording (its exception
        middleware answers some engine refusals itself, past the handlers above), made plain."""
        try:
            content = json.loads(body)
            error = content["error"]
            cleaned = client_message(error["message"])
        except (ValueError, KeyError, TypeError):
            cleaned = None
        if cleaned is not None and cleaned != error["message"]:
            error["message"] = cleaned
            error["type"] = TYPES.get(start["status"], error.get("type"))
            body = json.dumps(content).encode()
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            start = {**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
        await send(start)
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    async def _generic(send, status: int, request_id: str, original: bytes) -> None:
        if original:
            logger.error("request %s answered %d: %s", request_id, status, original[:20000].decode(errors="replace"))
        message = (f"the server could not answer this request (request id {request_id}); "
                   "the details are in the server's log")
        type_ = INTERNAL_TYPES.get(status, "InternalServerError")
        await _send_error(send, status, error_content(message, status, type_), request_id)


class BodyLimit:
    """413 in OpenAI's error body for a request body over the limit, without reading it whole: a
    declared Content-Length over the limit is refused before any of the body is read; a body sent
    without one (chunked) is counted as it arrives, and once past the limit the app reads no more
    (it sees the client gone) while the client gets the 413. `limits`: {(method, path): bytes}
    for routes with a larger allowance (file uploads)."""

    def __init__(self, app, max_bytes: int, limits: dict[tuple[str, str], int] | None = None):
        self.app, self.max_bytes, self.limits = app, max_bytes, limits or {}

    def _refusal(self, limit: int) -> dict:
        return error_content(f"the request body is over the limit of {limit} bytes", 413, "BadRequestError",
                             "request_too_large")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limits.get((scope["method"], scope["path"].rstrip("/")), self.max_bytes)
        request_id = _request_id(scope)
        declared = [v for k, v in scope.get("headers", []) if k == b"content-length"]
        if declared:
            try:
                length = int(declared[0])
            except ValueError:
                length = -1
            if length < 0:
                return await _send_error(send, 400, error_content("invalid Content-Length", 400), request_id,
                                         [(b"connection", b"close")])
            if length > limit:
                return await _send_error(send, 413, self._refusal(limit), request_id, [(b"connection", b"close")])
        seen, refused, answered, started = [0], [False], [False], [False]

        async def counted_receive():
            if refused[0]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen[0] += len(message.get("body", b""))
                if seen[0] > limit:
                    refused[0] = True
                    if not started[0]:
                        answered[0] = started[0] = True
                        await _send_error(send, 413, self._refusal(limit), request_id, [(b"connection", b"close")])
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            if answered[0]:
                return  # the 413 is the answer; whatever the app makes of the "disconnect" is dropped
            if message["type"] == "http.response.start":
                started[0] = True
            await send(message)

        await self.app(scope, counted_receive, guarded_send)
