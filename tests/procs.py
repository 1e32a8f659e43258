"""Real service processes for tests: Celery workers and the API as the launcher starts them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

from core.connection import connect
from core.launcher import COMMANDS, local
from core.settings import Settings
from core.workers import Presence

ROOT = Path(__file__).resolve().parent.parent


def spawn(
    cmd: list[str], settings: Settings | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """Start a service process in its own session (so a test can kill it and its children),
    configured by ``settings`` or by exactly ``env``; its output goes to a log file (a pipe
    nobody reads would block it), see ``log_of``."""
    env = {**os.environ, **(settings.env() if settings else {}), **(env or {})}
    log = tempfile.NamedTemporaryFile(prefix="iq-proc-", suffix=".log", delete=False)
    with log:
        proc = subprocess.Popen(
            cmd, env=env, cwd=ROOT, start_new_session=True, stdout=log, stderr=subprocess.STDOUT
        )
    proc.log_path = log.name  # type: ignore[attr-defined]
    return proc


def log_of(proc: subprocess.Popen, tail: int = 3000) -> str:
    return Path(proc.log_path).read_text(errors="replace")[-tail:]  # type: ignore[attr-defined]


def start_worker(
    settings: Settings, concurrency: int = 2, timeout: float = 60, loglevel: str = "WARNING"
) -> subprocess.Popen:
    """A `celery worker` subprocess; returns once its pool processes hold the model."""
    cmd = local(COMMANDS["worker"])
    cmd[cmd.index("INFO")] = loglevel
    cmd += ["--concurrency", str(concurrency), "--without-mingle", "--without-gossip"]
    proc = spawn(cmd, settings)
    return _wait_serving(
        proc, settings, lambda: {p.pid for p in psutil.Process(proc.pid).children()}, timeout
    )


def start_stream_worker(settings: Settings, timeout: float = 60) -> subprocess.Popen:
    """A `python -m worker.stream` subprocess; returns once it holds the model."""
    proc = spawn(local(COMMANDS["stream"]), settings)
    return _wait_serving(proc, settings, lambda: {proc.pid}, timeout)


def _wait_serving(
    proc: subprocess.Popen, settings: Settings, pids, timeout: float
) -> subprocess.Popen:
    """Wait until every process in ``pids()`` beats a heartbeat with the model loaded."""
    client = connect(settings)
    presence = Presence(client, settings)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            serving = {int(b.worker.split(":")[1]) for b in presence.live() if b.model_version}
            expected = pids()
            if expected and expected <= serving:
                return proc
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args[1:4]} exited: {log_of(proc)}")
            time.sleep(0.05)
    finally:
        client.close()
    stop(proc)
    raise RuntimeError(f"{proc.args[1:4]} did not load its model in time: {log_of(proc)}")


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Wait until ``url`` answers (the server ``proc`` must stay up meanwhile)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError as exc:
            if isinstance(exc, urllib.error.HTTPError):
                exc.close()  # (an HTTP error holds its connection open until closed)
            assert proc.poll() is None and time.monotonic() < deadline, log_of(proc)
            time.sleep(0.1)


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass
    finally:
        Path(proc.log_path).unlink(missing_ok=True)  # type: ignore[attr-defined]


PYTHON = sys.executable


class Supervised:
    """Keeps a service process running as docker compose's `restart: unless-stopped` does:
    if it exits, a new one is started (at most ``limit`` times)."""

    def __init__(self, start, limit: int = 5) -> None:
        import threading

        self._start = start
        self.limit = limit
        self.restarts = 0
        self.exits: list[tuple[int, str]] = []  # (exit code, end of its log) of each exit
        self.proc = start()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            if self.proc.poll() is not None and self.restarts < self.limit:
                self.exits.append((self.proc.returncode, log_of(self.proc, tail=1500)))
                self.restarts += 1
                try:
                    self.proc = self._start()
                except RuntimeError:
                    pass  # e.g. Redis still away: try again on the next round

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        stop(self.proc)
