"""Nobody let in: API keys and tenants, rate limits, bounded input, nothing that executes."""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import time
import urllib.request
import uuid

import psutil
import pytest

from api import create_app
from core.embedded_redis import free_port
from core.queue import SCORE_CHUNK, make_celery
from tests import procs
from tests.conftest import wait_for_job

ROW = [5.1, 3.5, 1.4, 0.2]
CSV = b"id,sepal_length,sepal_width,petal_length,petal_width\nq1,5.1,3.5,1.4,0.2\n"


@pytest.fixture(scope="module")
def keyed(settings, worker):
    keyed = dataclasses.replace(settings, api_keys="alice:KEY-A,bob:KEY-B", rate_limit_per_minute=0)
    return create_app({"SETTINGS": keyed}).test_client()


def job_keys(redis_client, settings) -> int:
    return len(list(redis_client.scan_iter(f"{settings.key_prefix}:job:*", count=1000)))


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("post", "/predict", {"json": {"features": ROW}}),
        ("post", "/v1/predict", {"json": {"instances": [ROW]}}),
        ("post", "/v1/jobs", {"data": CSV, "content_type": "text/csv"}),
        ("get", f"/v1/jobs/{uuid.uuid4()}", {}),
        ("get", "/v1/model", {}),
    ],
)
@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer nope"}])
def test_missing_or_wrong_key_is_401_and_creates_nothing(
    keyed, redis_client, settings, method, path, kwargs, headers
):
    before = job_keys(redis_client, settings)
    response = getattr(keyed, method)(path, headers=headers, **kwargs)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert job_keys(redis_client, settings) == before


def test_health_readiness_and_docs_stay_open(keyed):
    for path in ("/health", "/readyz", "/openapi.json", "/docs"):
        assert keyed.get(path).status_code == 200


def test_a_job_belongs_to_its_tenant(keyed):
    alice = {"X-API-Key": "KEY-A"}
    bob = {"Authorization": "Bearer KEY-B"}
    job_id = keyed.post("/v1/jobs", data=CSV, content_type="text/csv", headers=alice).get_json()[
        "job_id"
    ]
    uuid.UUID(job_id)  # a random UUID
    job = wait_for_job(_as(keyed, alice), job_id)
    assert job["status"] == "succeeded"
    assert keyed.get(f"/v1/jobs/{job_id}/result", headers=alice).status_code == 200
    never = f"/v1/jobs/{uuid.uuid4()}"
    for suffix in ("", "/result", "/errors", "/events"):
        theirs = keyed.get(f"/v1/jobs/{job_id}{suffix}", headers=bob)
        unknown = keyed.get(f"{never}{suffix}", headers=bob)
        assert theirs.status_code == unknown.status_code == 404
        assert theirs.get_json()["error"]["code"] == unknown.get_json()["error"]["code"]
    assert keyed.delete(f"/v1/jobs/{job_id}", headers=bob).status_code == 404
    assert keyed.get(f"/v1/jobs/{job_id}", headers=alice).get_json()["status"] == "succeeded"


class _as:
    """A test client that sends the same headers each time (for wait_for_job)."""

    def __init__(self, client, headers):
        self.client, self.headers = client, headers

    def get(self, path):
        return self.client.get(path, headers=self.headers)


def test_keys_file_holds_only_hashes(settings, worker, tmp_path):
    path = tmp_path / "keys"
    path.write_text(f"# tenant:sha256\ncarol:{hashlib.sha256(b'KEY-C').hexdigest()}\n")
    client = create_app(
        {"SETTINGS": dataclasses.replace(settings, api_keys_file=str(path))}
    ).test_client()
    assert client.post("/predict", json={"features": ROW}).status_code == 401
    ok = client.post("/predict", json={"features": ROW}, headers={"X-API-Key": "KEY-C"})
    assert ok.status_code == 200


def test_without_keys_the_api_will_not_listen_beyond_loopback(settings):
    cmd = procs.local(procs.COMMANDS["api"])
    env = {**settings.env(), "HOST": "0.0.0.0", "PORT": str(free_port())}
    run = subprocess.run(cmd, env=env, cwd=procs.ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert "refusing to listen on 0.0.0.0" in run.stdout + run.stderr


def test_rate_limit_is_per_tenant_and_shared_across_processes(settings, worker):
    limited = dataclasses.replace(
        settings, api_keys="alice:KEY-A,bob:KEY-B", rate_limit_per_minute=4,
        key_prefix=settings.key_prefix + "rl",
    )  # fmt: skip
    one, two = (create_app({"SETTINGS": limited}).test_client() for _ in range(2))
    alice = {"X-API-Key": "KEY-A"}
    path = f"/v1/jobs/{uuid.uuid4()}"  # any /v1 call counts; this one answers 404
    codes = [c.get(path, headers=alice).status_code for c in (one, two, one, two, one)]
    assert codes == [404, 404, 404, 404, 429]
    refused = two.get(path, headers=alice)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.get_json()["error"]["code"] == "rate_limited"
    assert one.get(path, headers={"X-API-Key": "KEY-B"}).status_code == 404


def test_limits_on_columns_row_length_and_json(client, settings):
    wide = ",".join(f"c{i}" for i in range(settings.max_columns + 1)) + "\n1\n"
    response = client.post("/v1/jobs", data=wide, content_type="text/csv")
    assert response.status_code == 413 and response.get_json()["error"]["field"] == "header"
    long_row = CSV + b"q2," + b"9" * (settings.max_row_bytes + 10) + b",1,1,1\n"
    response = client.post("/v1/jobs", data=long_row, content_type="text/csv")
    assert response.status_code == 413 and "line 3" in response.get_json()["error"]["message"]
    huge = b'{"instances": [' + b"[1, 2, 3, 4]," * (settings.max_json_bytes // 13) + b"[1,2,3,4]]}"
    response = client.post("/v1/predict", data=huge, content_type="application/json")
    assert response.status_code == 413 and response.get_json()["error"]["field"] == "body"


def test_upload_memory_stays_flat(settings, worker):
    """A 60 MB upload through gunicorn: the API process does not hold the file."""
    port = free_port()
    env = {"PORT": str(port), "WEB_CONCURRENCY": "1", "CHUNK_ROWS": "2000"}
    api = procs.spawn(procs.local(procs.COMMANDS["api"]), settings, env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        procs.wait_http(base + "/health", api)
        (child,) = psutil.Process(api.pid).children()
        note = b"x" * 1000
        row = b"%d," + note + b",5.1,3.5,1.4,0.2\n"
        body = b"id,note,sepal_length,sepal_width,petal_length,petal_width\n" + b"".join(
            row % i for i in range(60_000)
        )
        small = body[: len(body) // 60]
        rss = []
        for payload in (small, body):  # warm up with 1 MB, then measure the 60 MB one
            before = child.memory_info().rss
            request = urllib.request.Request(
                base + "/v1/jobs", data=payload, headers={"Content-Type": "text/csv"}
            )
            with urllib.request.urlopen(request, timeout=120) as response:
                assert response.status == 202
            rss.append(child.memory_info().rss - before)
        del body
        print(f"API process RSS grew {rss[1] / 2**20:.1f} MB on a 60 MB upload")
        assert rss[1] < 30 * 1024 * 1024, f"API grew {rss[1] / 2**20:.0f} MB on a 60 MB upload"
    finally:
        procs.stop(api)


def test_a_pickled_message_is_refused_and_never_runs(app, settings, worker):
    store = app.extensions["inference"].jobs
    job_id = store.new_id()
    store.put_inputs(job_id, [(0, b"p1,5.1,3.5,1.4,0.2\n")])
    layout = (
        '{"columns": ["id","sepal_length","sepal_width","petal_length","petal_width"], "width": 5}'
    )
    store.create(job_id, "batch", "anonymous", 1, 1, layout)
    attacker = make_celery(settings)
    attacker.conf.update(task_serializer="pickle", accept_content=["pickle", "json"])
    attacker.send_task(SCORE_CHUNK, args=[job_id, 0, 1, 1], serializer="pickle")
    # A JSON task sent after it runs, so the worker has read past the pickled one.
    client = app.test_client()
    marker = client.post("/v1/predict?wait=10", json={"instances": [ROW]})
    assert marker.status_code == 200
    deadline = time.monotonic() + 10
    while "pickle" not in procs.log_of(worker, tail=20000) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "Refusing to deserialize untrusted content of type pickle" in procs.log_of(
        worker, tail=20000
    )
    assert store.r.hget(store.key(job_id, "tries"), "0") is None  # the task never began
    assert client.get(f"/v1/jobs/{job_id}").get_json()["status"] == "queued"


def test_errors_carry_no_traceback_and_debug_is_off(settings, worker):
    app = create_app({"SETTINGS": settings})
    assert app.debug is False

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert response.get_json() == {"error": {"code": "internal_error", "message": "internal error"}}
    assert b"secret" not in response.data and b"Traceback" not in response.data
