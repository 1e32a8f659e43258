"""A worker process's model and heartbeat: loaded once per process, after fork, never per task.

Loading runs in a background thread that tasks wait on, so a slow model never trips Celery's
short window for ``worker_process_init`` (celery#1715), and /readyz learns when it is ready.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from core import registry
from core.connection import connect
from core.errors import ModelError
from core.jobs import JobStore
from core.registry import Manifest
from core.settings import Settings
from core.workers import Beat, Presence

log = logging.getLogger(__name__)


class ModelRuntime:
    def __init__(
        self, settings: Settings, kind: str = "celery", chores: Callable[[], object] | None = None
    ) -> None:
        """``chores`` runs after each heartbeat (the Celery workers sweep for lost chunks)."""
        self.settings = settings
        self.kind = kind
        self.name = f"{socket.gethostname()}:{os.getpid()}:{kind}"
        self.model: Any = None
        self.manifest: Manifest | None = None
        self.error = ""
        self.loads = 0
        self.tasks = 0
        self._loaded = threading.Event()
        self._lock = threading.Lock()
        self._started = False
        self._chores = chores
        self._client = connect(settings)
        self.store = JobStore(self._client, settings)
        self.presence = Presence(self._client, settings)

    def start(self) -> None:
        """Load the model and beat the heartbeat in the background (once per process)."""
        with self._lock:
            if self._started:
                return
            self._started = True
            self.name = f"{socket.gethostname()}:{os.getpid()}:{self.kind}"
        threading.Thread(target=self._run, name="model-runtime", daemon=True).start()

    def _run(self) -> None:
        self._load()
        while True:
            self.beat()
            if self._chores is not None:
                try:
                    self._chores()
                except Exception as exc:  # Redis away: the next round tries again
                    log.warning("%s failed: %s", getattr(self._chores, "__name__", "chore"), exc)
            time.sleep(self.settings.heartbeat_seconds)

    def _load(self) -> None:
        s = self.settings
        try:
            self.model, self.manifest = registry.load(
                s.model_registry, s.model_name, s.model_version
            )
            self.loads += 1
            log.info("loaded model %s %s", self.manifest.name, self.manifest.version)
        except (ModelError, OSError, ValueError) as exc:
            self.error = str(exc)
            log.error("cannot serve model %s: %s", s.model_name, exc)
        finally:
            self._loaded.set()

    def beat(self) -> None:
        version = self.manifest.version if self.manifest else ""
        beat = Beat(self.name, self.kind, version, self.loads, self.tasks, time.time(), self.error)
        try:
            self.presence.beat(beat, self.manifest)
        except Exception as exc:  # Redis away: the next beat tries again
            log.warning("heartbeat failed: %s", exc)

    def get(self, timeout: float = 60.0) -> tuple[Any, Manifest]:
        """The loaded model; waits for the background load. :raises ModelError: if it failed."""
        self.start()
        if not self._loaded.wait(timeout):
            raise ModelError(f"model {self.settings.model_name} did not load within {timeout}s")
        if self.manifest is None:
            raise ModelError(self.error or "no model loaded")
        self.tasks += 1
        return self.model, self.manifest

    def leave(self) -> None:
        try:
            self.presence.leave(self.name)
        except Exception:  # best effort on shutdown
            pass
