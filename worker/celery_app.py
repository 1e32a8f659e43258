"""The module the worker command points at: ``celery -A worker.celery_app worker``."""

from __future__ import annotations

import os
import tempfile

import billiard.process
from celery.concurrency.prefork import TaskPool as PreforkPool
from celery.signals import setup_logging, worker_process_init, worker_process_shutdown, worker_ready

from core import logs, metrics
from core.queue import make_celery
from core.settings import Settings
from worker import tasks
from worker.predictions import PredictionServer
from worker.runtime import ModelRuntime
from worker.sweeper import sweep

settings = Settings.from_env()
app = make_celery(settings)
# The pool processes share their Prometheus values through files (before any metric exists).
metrics.use_dir(
    os.path.join(settings.metrics_dir or tempfile.gettempdir(), f"iq-metrics-worker-{os.getpid()}")
)


@setup_logging.connect
def _logging(loglevel: int | str | None = None, **_: object) -> None:
    # Connecting here keeps Celery from installing its own handlers: JSON lines instead.
    logs.configure("worker", settings.log_format, loglevel or "INFO")


_servers: list[PredictionServer] = []


def _start_runtime() -> None:
    runtime = ModelRuntime(settings, chores=lambda: sweep(runtime.store, app, settings))
    tasks.bind(runtime)
    runtime.start()
    # Predictions come off their own lane, scored by a thread beside the tasks, in the first
    # PREDICT_PROCESSES pool processes (fewer takers make bigger batches: cheaper predictions).
    index = getattr(billiard.process.current_process(), "index", None)  # None: not a pool child
    if index is None or not settings.predict_processes or index < settings.predict_processes:
        _servers.append(PredictionServer(settings, runtime).start())


@worker_process_init.connect
def _load_in_child(**_: object) -> None:
    # Each prefork child loads its own model after fork, with its own Redis connections.
    _start_runtime()


@worker_ready.connect
def _ready(sender: object = None, **_: object) -> None:
    if settings.worker_metrics_port:
        metrics.serve(settings.worker_metrics_port)
    # solo and thread pools run tasks in this process: load here instead.
    if not isinstance(getattr(sender, "pool", None), PreforkPool):
        _start_runtime()


@worker_process_shutdown.connect
def _leave(**_: object) -> None:
    for server in _servers:
        server.stop()
    runtime = tasks.bound()
    if runtime is not None:
        runtime.leave()
    metrics.mark_dead(os.getpid())
