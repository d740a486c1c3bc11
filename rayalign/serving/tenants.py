"""API keys and the tenant each belongs to: the serving layer's one key store, read here.

A key is configured in the environment variable (comma-separated entries) or the keys file (one
entry a line). An entry is the key alone, which belongs to the tenant `default`, or the key, white
space and its tenant:

    sk-3f9c2a...            # file line: tenant "default"
    sk-91be07... acme       # file line: tenant "acme"
    RAYALIGN_API_KEYS="sk-3f9c2a...,sk-91be07... acme"

Tenant names are 1-64 characters of lower-case letters, digits, `-` and `_`, starting with a letter
or digit (they name folders on the storage). A key is compared with every configured key in
constant time; keys are never logged (a caller shows `fingerprint(key)`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from rayalign.data.readers import decode_utf8
from rayalign.finetune.store import check_tenant

DEFAULT_TENANT = "default"


@dataclass(frozen=True)
class ApiKey:
    key: str
    tenant: str


def fingerprint(key: str) -> str:
    """A short, one-way name for a key, for logs."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def _entry(text: str, where: str) -> ApiKey:
    fields = text.split()
    if len(fields) > 2:
        raise ValueError(f"{where}: expected a key and optionally its tenant, got {len(fields)} fields")
    tenant = fields[1] if len(fields) == 2 else DEFAULT_TENANT
    try:
        return ApiKey(fields[0], check_tenant(tenant))
    except ValueError:
        # not the value: an entry of two keys written with a space instead of a comma would show one
        raise ValueError(f"{where}: the word after the key is not a tenant name (1-64 characters of a-z, 0-9, "
                         "'-' and '_', starting with a letter or digit); separate keys with commas") from None


def read_api_keys(keys_env: str, keys_file: str | None) -> list[ApiKey]:
    """The keys of the environment variable `keys_env` and of `keys_file`, each with its tenant.
    Errors name the variable's entry or the file's line; a key given for two tenants is an error."""
    keys = [_entry(item, f"{keys_env}, entry {n}")
            for n, item in enumerate(os.environ.get(keys_env, "").split(","), 1) if item.strip()]
    if keys_file:
        path = Path(keys_file)
        if not path.is_file():
            raise FileNotFoundError(f"auth.keys_file {path}: no such file")
        keys += [_entry(line, f"auth.keys_file {path}, line {n}")
                 for n, line in enumerate(decode_utf8(path.read_bytes(), f"auth.keys_file {path}").splitlines(), 1)
                 if line.strip()]
    owners: dict[str, str] = {}
    for entry in keys:
        if owners.setdefault(entry.key, entry.tenant) != entry.tenant:
            raise ValueError(f"the key with fingerprint {fingerprint(entry.key)} is given for two tenants: "
                             f"{owners[entry.key]!r} and {entry.tenant!r}")
    return keys


# The tenant of the request being answered, set by the API-key middleware (rayalign.serving.auth)
# for everything the request runs; DEFAULT_TENANT when auth is off.
current_tenant: ContextVar[str] = ContextVar("rayalign_tenant", default=DEFAULT_TENANT)


def request_tenant() -> str:
    """The tenant of the request being answered (a function, so that routes pickled by value for
    Serve refer to it by name rather than carrying the ContextVar)."""
    return current_tenant.get()


class TenantKeys:
    """Which tenant a presented key belongs to."""

    def __init__(self, keys: list[ApiKey]):
        self._keys = [(k.key.encode(), k.tenant) for k in keys]

    def tenant_of(self, token: bytes | str) -> str | None:
        """The tenant of `token`, None for a key that is not configured. Every configured key is
        compared, each in constant time, so the time taken does not tell which one matched."""
        if isinstance(token, str):
            token = token.encode()
        found = None
        for key, tenant in self._keys:
            if hmac.compare_digest(token, key):
                found = tenant
        return found
