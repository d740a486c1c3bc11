"""The ASGI layers in front of the ingress's routes (outside ray.serve.llm's own exception
middleware), as plain ASGI middleware, so they see every response whichever layer made it:
InternalErrorShield (a 5xx carries a generic message and the request id, never the server's
internals) and BodyLimit (413 for a body over the limit, before it is read whole)."""

from __future__ import annotations

import json
import logging
import uuid

from rayalign.serving.errors import PUBLIC, TYPES, client_message, error_content

logger = logging.getLogger("ray.serve")


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
