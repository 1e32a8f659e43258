"""What an operator sees: /metrics of the API (across gunicorn processes) and of the workers
(across prefork processes), and JSON log lines that carry the job id."""

from __future__ import annotations

import dataclasses
import json
import re
import time
import urllib.request

from core.embedded_redis import free_port
from tests import procs
from tests.conftest import wait_for_job


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        return response.read().decode()


def value(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{name}(\{{[^}}]*\}})? (\S+)$", line)
        if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
            total += float(match.group(2))
    return total


def test_api_metrics_add_up_across_gunicorn_processes(api_url):
    before = value(scrape(api_url + "/metrics"), "http_requests_total", route="/health")
    for _ in range(40):  # spread over both gunicorn processes
        urllib.request.urlopen(api_url + "/health", timeout=5).close()
    text = scrape(api_url + "/metrics")
    assert value(text, "http_requests_total", route="/health", status="200") >= before + 40
    assert value(text, "http_request_seconds_count", route="/health") >= 40
    assert 'queue_depth{queue="' in text
    assert value(text, "workers_live", kind="celery") >= 1
    assert "jobs_active" in text


def test_worker_metrics_and_json_logs(settings):
    mine = dataclasses.replace(settings, key_prefix=settings.key_prefix + "ops",
                               worker_metrics_port=free_port())  # fmt: skip
    worker = procs.start_worker(mine, concurrency=2, loglevel="INFO")
    try:
        from api import create_app

        client = create_app({"SETTINGS": mine}).test_client()
        body = (
            b"id,sepal_length,sepal_width,petal_length,petal_width\n"
            + b"".join(b"r%d,5.1,3.5,1.4,0.2\n" % i for i in range(400))
            + b"bad,x,1,1,1\n"
        )
        job_id = client.post("/v1/jobs", data=body, content_type="text/csv").get_json()["job_id"]
        assert wait_for_job(client, job_id)["status"] == "succeeded"
        url = f"http://127.0.0.1:{mine.worker_metrics_port}/metrics"
        # Each pool process counts a chunk just after the job store did: the job can end (and be
        # counted by the process of its last chunk) before another process counted its own.
        deadline = time.monotonic() + 10
        while value(scrape(url), "chunk_seconds_count", kind="batch") < 11:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        text = scrape(url)
        assert value(text, "rows_total", outcome="scored") == 400  # both pool processes
        assert value(text, "rows_total", outcome="failed") == 1
        assert value(text, "chunk_seconds_count", kind="batch") == 11  # 401 rows, 40 a chunk
        assert value(text, "jobs_finished_total", kind="batch", status="succeeded") == 1
        assert "chunk_redeliveries_total" in text
        lines = [json.loads(x) for x in procs.log_of(worker, tail=200_000).splitlines()
                 if x.startswith("{")]  # fmt: skip
        mentioning = [x for x in lines if x.get("job_id") == job_id]
        assert any(x["msg"] == "job succeeded" for x in mentioning)
        assert all({"ts", "level", "component", "msg"} <= set(x) for x in lines)
    finally:
        procs.stop(worker)
