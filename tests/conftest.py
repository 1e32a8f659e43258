"""Real parts: a redis-server process, a registered model, a Celery worker subprocess."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import registry
from core.connection import connect
from core.embedded_redis import EmbeddedRedis, free_port
from core.settings import Settings
from tests import procs
from training.train import FEATURES, train_iris


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis().start()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def model_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    model, metrics = train_iris()
    registry.register(model, FEATURES, root, "iris", metrics)
    return root


@pytest.fixture(scope="session")
def settings(redis_server: EmbeddedRedis, model_registry: Path) -> Settings:
    return Settings(
        redis_url=redis_server.url,
        model_registry=str(model_registry),
        chunk_rows=40,
        heartbeat_seconds=0.5,
        heartbeat_ttl_seconds=3.0,
        key_prefix="t" + secrets.token_hex(3),
    )


@pytest.fixture(scope="session")
def worker(settings: Settings) -> Iterator:
    proc = procs.start_worker(settings, concurrency=2)
    yield proc
    procs.stop(proc)


@pytest.fixture(scope="session")
def app(settings: Settings, worker):
    from api import create_app

    return create_app({"SETTINGS": settings, "TESTING": True})


@pytest.fixture(scope="session")
def api_url(settings: Settings, worker) -> Iterator[str]:
    """The API as `make run` serves it: gunicorn, on a free loopback port."""
    port = free_port()
    proc = procs.spawn(procs.local(procs.COMMANDS["api"]), settings, env={"PORT": str(port)})
    base = f"http://127.0.0.1:{port}"
    procs.wait_http(base + "/health", proc)
    yield base
    procs.stop(proc)


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture()
def redis_client(settings: Settings):
    client = connect(settings)
    yield client
    client.close()


def wait_for_job(client, job_id: str, timeout: float = 60.0) -> dict:
    """Poll the status endpoint as a client would, until the job ends."""
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/v1/jobs/{job_id}").get_json()
        if body["status"] in ("succeeded", "failed", "cancelled"):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {body['status']} after {timeout}s: {body}")
        time.sleep(0.05)
