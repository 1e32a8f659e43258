"""Prometheus metrics of the API and the workers, one set of names for both.

Processes that fork (gunicorn, Celery prefork) keep their values in files under one directory
per service (prometheus_client's multiprocess mode): ``use_dir`` sets it, and must run before
the first ``get()``, which is when prometheus_client is imported.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from functools import cache
from typing import Any

ENV = "PROMETHEUS_MULTIPROC_DIR"


def use_dir(directory: str) -> None:
    """Keep this process tree's metrics in ``directory``, emptied first (stale values lie)."""
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, exist_ok=True)
    os.environ[ENV] = directory


def multiprocess() -> bool:
    return bool(os.environ.get(ENV))


@dataclass(frozen=True)
class Metrics:
    requests: Any
    latency: Any
    jobs: Any
    rows: Any
    chunk_seconds: Any
    redeliveries: Any
    stream_records: Any
    stream_batch_seconds: Any


@cache
def get() -> Metrics:
    from prometheus_client import Counter, Histogram

    return Metrics(
        requests=Counter("http_requests_total", "API requests", ["route", "method", "status"]),
        latency=Histogram(
            "http_request_seconds",
            "API request latency",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        ),  # fmt: skip
        jobs=Counter("jobs_finished_total", "Jobs that ended", ["kind", "status"]),
        rows=Counter("rows_total", "Rows handled by workers", ["outcome"]),
        chunk_seconds=Histogram(
            "chunk_seconds",
            "Time to score one chunk or prediction job",
            ["kind"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        ),  # fmt: skip
        redeliveries=Counter("chunk_redeliveries_total", "Chunks delivered more than once"),
        stream_records=Counter("stream_records_total", "Stream records handled", ["outcome"]),
        stream_batch_seconds=Histogram("stream_batch_seconds", "Time to handle one stream batch"),
    )


def registry() -> Any:
    """What to expose: every process's values in multiprocess mode, else this process's."""
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client import multiprocess as mp

    if not multiprocess():
        return REGISTRY
    collected = CollectorRegistry()
    mp.MultiProcessCollector(collected)
    return collected


def mark_dead(pid: int) -> None:
    if multiprocess():
        from prometheus_client import multiprocess as mp

        mp.mark_process_dead(pid)


def serve(port: int) -> None:
    """A /metrics HTTP server for a worker (on all interfaces, for Prometheus to scrape)."""
    from prometheus_client import start_http_server

    start_http_server(port, registry=registry())
