"""`make run`: Redis (bundled unless REDIS_URL is set), workers and the API, in the foreground.

Trains and registers the Iris model first if none is registered. Ctrl-C or SIGTERM stops all.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from core.embedded_redis import EmbeddedRedis, free_port
from core.registry import active_version
from core.settings import Settings

BIN = Path(sys.executable).parent
#: How many times `make run` restarts one service before it gives up and stops.
MAX_RESTARTS = 5


#: Each service's command line; docker-compose.yml runs the same ones (a test holds them equal).
COMMANDS = {
    "worker": ["celery", "-A", "worker.celery_app", "worker", "--loglevel", "INFO"],
    "stream": ["python", "-m", "worker.stream"],
    "api": ["gunicorn", "-c", "api/gunicorn_conf.py", "api.wsgi:app"],
}


def local(command: list[str]) -> list[str]:
    """The command with its program taken from this virtualenv."""
    return [str(BIN / command[0]), *command[1:]]


def _wait_ready(
    url: str, procs: dict[str, subprocess.Popen], stopping, timeout: float = 120
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stopping():
        for name, proc in procs.items():
            if proc.poll() is not None:
                print(f"{name} exited with {proc.returncode}", file=sys.stderr)
                return False
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.3)
    return False


def main() -> int:
    settings = Settings.from_env()
    if not active_version(settings.model_registry, settings.model_name):
        subprocess.run([sys.executable, "-m", "training.train", "--if-missing"], check=True)
    redis_server = None
    if not os.environ.get("REDIS_URL"):
        redis_server = EmbeddedRedis(data_dir=None).start()
        settings = Settings.from_env(redis_url=redis_server.url)
        print(f"started the bundled Redis at {redis_server.url}")
    ports = {}
    if not settings.worker_metrics_port:
        ports["worker_metrics_port"] = free_port()
    if not settings.stream_metrics_port:
        ports["stream_metrics_port"] = free_port()
    settings = dataclasses.replace(settings, **ports)
    env = {**os.environ, **settings.env()}
    procs: dict[str, subprocess.Popen] = {}
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    try:
        for name, cmd in COMMANDS.items():
            procs[name] = subprocess.Popen(local(cmd), env=env)
        base = f"http://{settings.host}:{settings.port}"
        if _wait_ready(base + "/readyz", procs, lambda: stopping):
            print(
                f"\nready: API {base}  (docs {base}/docs, health {base}/health)\n"
                f"       stream: XADD {settings.stream_input} on {settings.redis_url}, "
                f"results on {settings.stream_output}\n"
                f"       metrics: {base}/metrics, "
                f"worker http://127.0.0.1:{settings.worker_metrics_port}/metrics, "
                f"stream http://127.0.0.1:{settings.stream_metrics_port}/metrics\n",
                flush=True,
            )
        elif not stopping:
            print("the stack did not become ready; see the messages above", file=sys.stderr)
            code = 1
            stopping = True
        restarts: dict[str, int] = {}
        while not stopping:
            # Restart a service that exits, as compose's restart policy does (Celery's worker
            # can exit on an error inside kombu while Redis restarts); give up after a few.
            for name, proc in list(procs.items()):
                if proc.poll() is None:
                    continue
                restarts[name] = restarts.get(name, 0) + 1
                if restarts[name] > MAX_RESTARTS:
                    print(f"{name} keeps exiting ({proc.returncode}); stopping", file=sys.stderr)
                    code, stopping = 1, True
                    break
                print(f"{name} exited with {proc.returncode}; starting it again", file=sys.stderr)
                procs[name] = subprocess.Popen(local(COMMANDS[name]), env=env)
            time.sleep(0.5)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        if redis_server is not None:
            redis_server.cleanup()
        print("stopped", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
