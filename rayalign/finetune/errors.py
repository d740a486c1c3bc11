"""The service's errors, each carrying the HTTP status and OpenAI's error fields (code, param)."""

from __future__ import annotations


class ServiceError(Exception):
    """An error a client sees as OpenAI's {"error": {message, type, param, code}} with `status`."""

    status = 400
    kind = "invalid_request_error"

    def __init__(self, message: str, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.message, self.code, self.param = message, code, param

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


class NotFound(ServiceError):
    """Unknown, deleted, or another tenant's: one answer for all three, so ids do not leak."""

    status = 404

    def __init__(self, what: str, object_id: str, param: str = "id"):
        super().__init__(f"No such {what}: {object_id}", None, param)


class LimitReached(ServiceError):
    """A tenant's limit (concurrent jobs, stored bytes)."""

    status = 429
    kind = "rate_limit_error"
