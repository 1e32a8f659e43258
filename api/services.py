"""What the API's views use, built once per app: Redis clients, the job store, the queue."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis
from celery import Celery
from flask import current_app

from api.gate import PredictGate
from core.connection import connect
from core.errors import Unavailable
from core.jobs import JobStore
from core.lane import PredictLane
from core.queue import PUBLISH_RETRY, make_celery
from core.registry import Manifest
from core.settings import Settings
from core.workers import Presence

#: How long the API trusts the model manifest it read from Redis.
MANIFEST_CACHE_SECONDS = 2.0


@dataclass
class Services:
    settings: Settings
    redis: redis.Redis
    jobs: JobStore
    presence: Presence
    celery: Celery
    event_slots: threading.BoundedSemaphore  # live event streams this process may hold open
    lane: PredictLane
    gate: PredictGate  # predictions from this process, sent and answered together
    keys: Any = None  # api.auth.KeyRing, or None when the API is open
    rate_script: Any = None
    _manifest: tuple[float, Manifest | None] = (0.0, None)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def build(cls, settings: Settings) -> Services:
        client = connect(settings)
        jobs = JobStore(client, settings)
        lane = PredictLane(settings)
        services = cls(
            settings=settings,
            redis=client,
            jobs=jobs,
            presence=Presence(client, settings),
            celery=make_celery(settings),
            event_slots=threading.BoundedSemaphore(
                settings.event_streams or max(1, settings.api_connections // 10)
            ),
            lane=lane,
            gate=PredictGate(settings, lane),
        )
        return services

    def manifest(self) -> Manifest:
        """The manifest of the model the workers serve. :raises Unavailable: if none has loaded."""
        at, cached = self._manifest
        if cached is None or time.monotonic() - at > MANIFEST_CACHE_SECONDS:
            cached = self.presence.manifest()
            with self._lock:
                self._manifest = (time.monotonic(), cached)
        if cached is None:
            raise Unavailable(
                f"no worker has loaded model {self.settings.model_name!r} yet; start a worker"
            )
        return cached

    def send(self, task: str, arglists: list[list]) -> None:
        """Publish tasks on one connection; bounded retries so a dead Redis is a 503 in seconds."""
        with self.celery.producer_or_acquire() as producer:
            for args in arglists:
                self.celery.send_task(
                    task, args=args, producer=producer, retry_policy=PUBLISH_RETRY
                )


def services() -> Services:
    return current_app.extensions["inference"]
