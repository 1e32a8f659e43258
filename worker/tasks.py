"""Celery tasks: thin wrappers that hand their JSON arguments to worker.batch."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from celery import shared_task
from celery.exceptions import Reject, SoftTimeLimitExceeded

from core.queue import SCORE_CHUNK
from worker import batch
from worker.runtime import ModelRuntime

log = logging.getLogger(__name__)
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


def _requeue_on_retryable(work: Callable[[], str]) -> str:
    """Run ``work``; if Redis drops or the soft time limit hits, put the message back.

    (An acknowledged failure would drop the chunk, and the job would never end. The delivery
    count in the job record still caps how often this can happen.)
    """
    try:
        return work()
    except batch.RETRYABLE as exc:
        log.warning("task interrupted (%r); requeueing it", exc)
        if not isinstance(exc, SoftTimeLimitExceeded):
            time.sleep(1)  # Redis is away: do not spin
        raise Reject(repr(exc), requeue=True) from exc


@shared_task(name=SCORE_CHUNK)
def score_chunk(job_id: str, chunk: int, first_row: int, rows: int) -> str:
    return _requeue_on_retryable(
        lambda: batch.score_chunk(runtime(), job_id, chunk, first_row, rows)
    )
