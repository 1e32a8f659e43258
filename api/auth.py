"""Who is calling: API keys map to tenants; each tenant has a request budget kept in Redis.

With no keys configured the service is open (every caller is the tenant "anonymous") and
gunicorn refuses to listen beyond loopback (see api/gunicorn_conf.py).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from dataclasses import dataclass
from pathlib import Path

from flask import Flask, g, request

from api.services import services
from core.errors import TooManyRequests, Unauthorized
from core.settings import Settings

ANONYMOUS = "anonymous"
#: Paths that need a key when keys are on: the /v1 API and the original /predict.
PROTECTED = ("/v1/", "/predict")

# KEYS: counter.  ARGV: window ms, limit.  -> 0 if allowed, else ms until the window ends.
_HIT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
if n > tonumber(ARGV[2]) then return math.max(redis.call('PTTL', KEYS[1]), 1) end
return 0
"""


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class KeyRing:
    """Tenants by the sha256 of their key; the keys themselves are not kept."""

    tenants: dict[str, str]

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing | None:
        tenants: dict[str, str] = {}
        for item in filter(None, (p.strip() for p in settings.api_keys.split(","))):
            tenant, _, key = item.partition(":")
            if not tenant.strip() or not key.strip():
                raise ValueError("API_KEYS must look like 'tenant:key,tenant:key'")
            tenants[digest(key.strip())] = tenant.strip()
        if settings.api_keys_file:
            for n, line in enumerate(Path(settings.api_keys_file).read_text().splitlines(), 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                tenant, _, hashed = line.partition(":")
                if not tenant or len(hashed) != 64:
                    raise ValueError(
                        f"{settings.api_keys_file}:{n}: expected 'tenant:<sha256 hex>'"
                    )
                tenants[hashed.lower()] = tenant
        return cls(tenants) if tenants else None

    def tenant_for(self, key: str) -> str | None:
        presented = digest(key)
        for known, tenant in self.tenants.items():
            if hmac.compare_digest(known, presented):
                return tenant
        return None


def presented_key() -> str:
    key = request.headers.get("X-API-Key", "")
    auth = request.headers.get("Authorization", "")
    if not key and auth[:7].lower() == "bearer ":
        key = auth[7:].strip()
    return key


def tenant() -> str:
    """The calling tenant (set for every protected request)."""
    return g.get("tenant", ANONYMOUS)


def _rate_limit(name: str) -> None:
    svc = services()
    limit = svc.settings.rate_limit_per_minute
    if limit <= 0:
        return
    window = int(time.time() // 60)
    counter = f"{svc.settings.key_prefix}:rate:{name}:{window}"
    wait_ms = svc.rate_script(keys=[counter], args=[60_000, limit])
    if wait_ms:
        retry = max(1, math.ceil(int(wait_ms) / 1000))
        raise TooManyRequests(
            f"tenant {name!r} is over {limit} requests a minute; retry in {retry}s",
            retry_after=retry,
        )


def init_app(app: Flask) -> None:
    svc = app.extensions["inference"]
    svc.keys = KeyRing.from_settings(svc.settings)
    svc.rate_script = svc.redis.register_script(_HIT)

    @app.before_request
    def authenticate() -> None:
        if not request.path.startswith(PROTECTED):
            return
        ring = services().keys
        if ring is None:
            g.tenant = ANONYMOUS
        else:
            key = presented_key()
            found = ring.tenant_for(key) if key else None
            if found is None:
                raise Unauthorized(
                    "a valid API key is needed: send it as X-API-Key or Authorization: Bearer",
                    field="X-API-Key",
                )
            g.tenant = found
        _rate_limit(g.tenant)
