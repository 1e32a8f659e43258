"""Single predictions over HTTP: the service's /predict and /v1/predict?wait= against the
baseline app under the same gunicorn settings, at 1, 8 and 32 concurrent clients."""

from __future__ import annotations

import json
import time

from bench import load
from bench.stack import Stack, wait_http
from core.embedded_redis import free_port
from core.launcher import local

BODY = json.dumps({"features": [5.1, 3.5, 1.4, 0.2]}).encode()
V1_BODY = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]}).encode()
CLIENTS = (1, 8, 32)


def run(seconds: float) -> dict:
    """Each step runs against the service and then the baseline right after it, so both see the
    machine in the same state (its speed drifts)."""
    figures: dict = {"service_predict": [], "service_v1_wait": [], "baseline_predict": []}
    with Stack(celery_processes=2, api=True) as stack:
        port = free_port()
        cmd = local(["gunicorn", "-c", "api/gunicorn_conf.py", "bench.baseline_app:app"])
        stack._spawn(cmd, {"PORT": str(port)})
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/health", time.monotonic() + 60)
        for url in (stack.url, base):
            load.run(url + "/predict", BODY, 8, 1.0)  # warm-up, not counted
        for clients in CLIENTS:
            figures["service_predict"].append(
                load.run(stack.url + "/predict", BODY, clients, seconds).__dict__
            )
            figures["service_v1_wait"].append(
                load.run(stack.url + "/v1/predict?wait=5", V1_BODY, clients, seconds).__dict__
            )
            figures["baseline_predict"].append(
                load.run(base + "/predict", BODY, clients, seconds).__dict__
            )
        figures["generator_ceiling"] = load.run(base + "/health", None, 32, seconds).__dict__
    return figures
