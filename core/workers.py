"""Worker presence: each worker process beats a heartbeat with the model it holds.

The API reads it for /readyz and for the active model's manifest (which it needs to check
uploads), so the API never loads a model file itself.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import redis

from core.registry import Manifest
from core.settings import Settings


@dataclass(frozen=True)
class Beat:
    worker: str
    kind: str
    model_version: str
    model_loads: int
    tasks: int
    at: float
    error: str = ""


class Presence:
    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.r = client
        self.settings = settings
        self.beats_key = f"{settings.key_prefix}:workers"
        self.info_key = f"{settings.key_prefix}:workers:info"
        self.manifest_key = f"{settings.key_prefix}:model:{settings.model_name}"

    def beat(self, beat: Beat, manifest: Manifest | None) -> None:
        cutoff = time.time() - self.settings.heartbeat_ttl_seconds * 3
        pipe = self.r.pipeline()
        pipe.zadd(self.beats_key, {beat.worker: beat.at})
        pipe.hset(self.info_key, beat.worker, json.dumps(beat.__dict__))
        # Forget workers long gone so the sets stay small.
        stale = self.r.zrangebyscore(self.beats_key, 0, cutoff)
        if stale:
            pipe.zrem(self.beats_key, *stale)
            pipe.hdel(self.info_key, *stale)
        if manifest is not None:
            pipe.set(self.manifest_key, json.dumps(manifest.to_dict()))
        pipe.execute()

    def leave(self, worker: str) -> None:
        pipe = self.r.pipeline()
        pipe.zrem(self.beats_key, worker)
        pipe.hdel(self.info_key, worker)
        pipe.execute()

    def live(self) -> list[Beat]:
        """Workers heard from within the heartbeat TTL (with a model, or the error loading it)."""
        since = time.time() - self.settings.heartbeat_ttl_seconds
        names = self.r.zrangebyscore(self.beats_key, since, "+inf")
        if not names:
            return []
        return [Beat(**json.loads(v)) for v in self.r.hmget(self.info_key, names) if v]

    def manifest(self) -> Manifest | None:
        raw = self.r.get(self.manifest_key)
        return Manifest.from_dict(json.loads(raw)) if raw else None
