"""The service on a private Redis for benchmarks: model, Redis, workers, API, torn down after."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import redis

from core import registry
from core.connection import connect
from core.embedded_redis import EmbeddedRedis, free_port
from core.launcher import COMMANDS, local
from core.settings import Settings
from core.workers import Presence
from training.train import FEATURES, train_iris

ROOT = Path(__file__).resolve().parent.parent


def wait_http(url: str, deadline: float) -> None:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError as exc:
            if isinstance(exc, urllib.error.HTTPError):
                exc.close()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer") from None
            time.sleep(0.1)


class Stack:
    def __init__(self, stream_workers: int = 0, celery_processes: int = 0, api: bool = False,
                 **overrides: object) -> None:  # fmt: skip
        self.stream_workers = stream_workers
        self.celery_processes = celery_processes
        self.api = api
        self.overrides = overrides
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> Stack:
        self.tmp = tempfile.TemporaryDirectory(prefix="iq-bench-")
        model, metrics = train_iris()
        registry.register(model, FEATURES, self.tmp.name, "iris", metrics)
        self.redis = EmbeddedRedis(appendonly=True).start()
        self.settings = Settings(
            redis_url=self.redis.url,
            model_registry=self.tmp.name,
            heartbeat_seconds=0.5,
            rate_limit_per_minute=0,
            port=free_port(),
            log_format="text",
            **self.overrides,
        )  # type: ignore[arg-type]
        for _ in range(self.stream_workers):
            self._spawn(local(COMMANDS["stream"]))
        if self.celery_processes:
            self._spawn(local(COMMANDS["worker"]) + ["--concurrency", str(self.celery_processes)])
        expected = self.stream_workers + self.celery_processes
        presence = Presence(connect(self.settings), self.settings)
        deadline = time.monotonic() + 60
        while len([b for b in presence.live() if b.model_version]) < expected:
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not start")
            time.sleep(0.1)
        if self.api:
            self.api_proc = self._spawn(local(COMMANDS["api"]))
            wait_http(self.url + "/health", deadline)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    def _spawn(self, cmd: list[str], extra: dict[str, str] | None = None) -> subprocess.Popen:
        env = {**os.environ, **self.settings.env(), **(extra or {})}
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        self.procs.append(proc)
        return proc

    def redis_client(self) -> redis.Redis:
        return redis.Redis.from_url(self.settings.redis_url, socket_timeout=30)

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        self.redis.cleanup()
        self.tmp.cleanup()
