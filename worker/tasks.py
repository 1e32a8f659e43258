"""Celery tasks: thin wrappers that hand their JSON arguments to worker.batch."""

from __future__ import annotations

from celery import shared_task

from core.queue import SCORE_CHUNK, SCORE_INSTANCES
from worker import batch
from worker.runtime import ModelRuntime

_runtime: ModelRuntime | None = None


def bind(runtime: ModelRuntime) -> None:
    global _runtime
    _runtime = runtime


def bound() -> ModelRuntime | None:
    return _runtime


def runtime() -> ModelRuntime:
    if _runtime is None:
        raise RuntimeError("worker.tasks.bind() was not called")
    return _runtime


@shared_task(name=SCORE_CHUNK)
def score_chunk(job_id: str, chunk: int, first_row: int, rows: int) -> str:
    return batch.score_chunk(runtime(), job_id, chunk, first_row, rows)


@shared_task(name=SCORE_INSTANCES)
def score_instances(job_id: str) -> str:
    return batch.score_instances(runtime(), job_id)
