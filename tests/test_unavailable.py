"""An unreachable Redis is a quick 503 in the error shape, never a 500 or a hang."""

from __future__ import annotations

import time

import pytest

from api import create_app
from core.embedded_redis import free_port
from core.settings import Settings


@pytest.fixture()
def down_client(tmp_path):
    settings = Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout=1.0,
                        model_registry=str(tmp_path))  # fmt: skip
    return create_app({"SETTINGS": settings}).test_client()


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("post", "/predict", {"json": {"features": [5.1, 3.5, 1.4, 0.2]}}),
        ("post", "/v1/predict", {"json": {"instances": [[5.1, 3.5, 1.4, 0.2]]}}),
        ("post", "/v1/jobs", {"data": b"5.1,3.5,1.4,0.2\n", "content_type": "text/csv"}),
        ("get", "/v1/jobs/00000000-0000-4000-8000-000000000000", {}),
        ("delete", "/v1/jobs/00000000-0000-4000-8000-000000000000", {}),
        ("get", "/v1/model", {}),
    ],
)
def test_redis_down_is_503(down_client, method, path, kwargs):
    started = time.monotonic()
    response = getattr(down_client, method)(path, **kwargs)
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "unavailable"
    assert elapsed < 15, "a hang guard, not a speed claim"


def test_readyz_says_why_and_health_stays_up(down_client):
    response = down_client.get("/readyz")
    assert response.status_code == 503
    assert "redis unreachable" in response.get_json()["reasons"][0]
    assert down_client.get("/health").status_code == 200
