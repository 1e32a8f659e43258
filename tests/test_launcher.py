"""`make run`'s launcher on a fresh registry: trains, starts everything, stops on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

from core.embedded_redis import free_port
from tests.procs import ROOT


def _call(url: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=15) as response:
        return response.status, json.loads(response.read())


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        p, pp = map(int, line.split())
        children.setdefault(pp, []).append(p)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _stream_workers(pid: int) -> list[int]:
    import psutil

    found = []
    for child in psutil.Process(pid).children():
        try:
            if "worker.stream" in " ".join(child.cmdline()) and child.status() != "zombie":
                found.append(child.pid)
        except psutil.Error:
            pass
    return found


def test_make_run_starts_everything_and_stops_on_sigterm(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(PORT=str(port), MODEL_REGISTRY=str(tmp_path / "models"), WORKER_CONCURRENCY="1",
               WEB_CONCURRENCY="1")  # fmt: skip
    log = open(tmp_path / "run.log", "w+b")
    proc = subprocess.Popen([sys.executable, "-m", "core.launcher"], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while b"ready: API" not in (tmp_path / "run.log").read_bytes():
            assert proc.poll() is None, (tmp_path / "run.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "run.log").read_text()
            time.sleep(0.2)
        assert _call(base + "/readyz")[0] == 200
        assert _call(base + "/health") == (200, {"status": "ok"})
        status, body = _call(base + "/predict", {"features": [5.1, 3.5, 1.4, 0.2]})
        assert status == 200 and body["prediction"] == "setosa"
        assert (tmp_path / "models" / "iris" / "ACTIVE").exists()  # trained because none was
        # A service that exits is started again, as compose's restart policy would.
        streams = _stream_workers(proc.pid)
        assert len(streams) == 1
        os.kill(streams[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while _stream_workers(proc.pid) in ([], streams):
            assert time.monotonic() < deadline, "the stream worker was not restarted"
            time.sleep(0.2)
        children = _descendants(proc.pid)
        assert len(children) >= 4  # redis, worker (+ its child), gunicorn (+ its worker)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        log.close()
    assert code == 0, (tmp_path / "run.log").read_text()
    assert b"stopped" in (tmp_path / "run.log").read_bytes()
    still = [pid for pid in children if os.path.exists(f"/proc/{pid}") and
             b"zombie" not in open(f"/proc/{pid}/status", "rb").read().lower()]  # fmt: skip
    assert still == [], "processes left behind after stop"
