"""Bearer-token API keys and the request log, as one ASGI middleware in front of the ingress.

Every request needs `Authorization: Bearer <key>` with one of the configured keys; otherwise
401 in the OpenAI error format. The key's tenant is `current_tenant` for the rest of the request. Serve's own health route (`/-/healthz`) is answered by the
proxy and never reaches this. Each request is logged with its id, method, path, status,
latency and the key's short fingerprint (never the key).
"""

from __future__ import annotations

import logging
import time

from rayalign.serving.errors import error_bytes
from rayalign.serving.settings import AuthSettings
from rayalign.serving.tenants import DEFAULT_TENANT, ApiKey, TenantKeys, current_tenant, fingerprint, read_api_keys

logger = logging.getLogger("ray.serve")


def load_api_keys(settings: AuthSettings) -> list[ApiKey]:
    """The keys from the environment variable and the secret file, each with its tenant (entries
    `KEY` or `KEY TENANT`, rayalign/serving/tenants.py); an error if auth is on and there are none."""
    keys = read_api_keys(settings.keys_env, settings.keys_file)
    if settings.enabled and not keys:
        raise ValueError(f"API keys are on but none is configured: set {settings.keys_env} (comma-separated) "
                         "or auth.keys_file, or turn auth off with auth.enabled: false")
    return keys


class ApiKeyMiddleware:
    def __init__(self, app, settings: AuthSettings):
        self.app = app
        self.keys = TenantKeys(load_api_keys(settings))
        self.enabled = settings.enabled

    def _caller(self, headers: dict[bytes, bytes]) -> tuple[str, str] | None:
        """(fingerprint of the key, its tenant) for a valid key, ("-", default tenant) when auth
        is off, None when refused."""
        if not self.enabled:
            return "-", DEFAULT_TENANT
        scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
        if scheme.lower() != b"bearer":
            return None
        token = token.strip()
        tenant = self.keys.tenant_of(token)
        return None if tenant is None else (fingerprint(token.decode(errors="replace")), tenant)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers", []))
        request_id = headers.get(b"x-request-id", b"-").decode()
        start, status = time.perf_counter(), [0]

        async def send_logged(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        caller = self._caller(headers)
        try:
            if caller is None:
                body = error_bytes("missing or invalid API key: send 'Authorization: Bearer <key>'", 401,
                                   code="invalid_api_key")
                await send_logged({"type": "http.response.start", "status": 401, "headers": [
                    (b"content-type", b"application/json"), (b"x-request-id", request_id.encode()),
                    (b"www-authenticate", b"Bearer")]})
                await send_logged({"type": "http.response.body", "body": body})
            else:
                token = current_tenant.set(caller[1])
                try:
                    await self.app(scope, receive, send_logged)
                finally:
                    current_tenant.reset(token)
        finally:
            logger.info("request %s %s %s -> %s in %.1f ms (key %s)", request_id, scope["method"], scope["path"],
                        status[0], (time.perf_counter() - start) * 1e3, caller[0] if caller else "refused")
