"""What a task does, as plain functions of a runtime: score one chunk, or one prediction job.

Each is safe to run twice (the job store counts a chunk once) and checks the job record before
scoring, so a cancelled job starts no new chunk whatever Celery still holds. A chunk that cannot
be scored fails its rows with the reason, so a job always ends; an unreachable Redis or a task
over its time limit goes back to the queue instead, under the same delivery cap.
"""

from __future__ import annotations

import json
import logging

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded

from core import csvio
from core.connection import REDIS_DOWN
from core.errors import ModelError, Unprocessable
from core.jobs import ChunkStart
from worker.runtime import ModelRuntime
from worker.scoring import as_json, score

log = logging.getLogger(__name__)

#: Failures that say nothing about the chunk itself: the task goes back on the queue
#: (worker.tasks), and the delivery cap still ends a chunk that always hits them.
RETRYABLE = (*REDIS_DOWN, SoftTimeLimitExceeded)


class ChunkFailed(Exception):
    """A chunk that will not be scored, whatever happens next."""


def _skip(start: ChunkStart | None) -> str:
    """Why this delivery does nothing: the job is gone or over, or the chunk is done already."""
    if start is None:
        return "gone"
    if start.status.finished:
        return f"skipped: job {start.status.value}"
    if start.data is None:
        return "duplicate"  # an earlier delivery finished it and dropped its input
    return ""


def _check_deliveries(rt: ModelRuntime, start: ChunkStart) -> None:
    if start.deliveries > rt.settings.max_deliveries:
        raise ChunkFailed(
            f"this chunk was delivered {start.deliveries - 1} times and never finished"
        )


def _fail(rt: ModelRuntime, job_id: str, chunk: int, first_row: int, rows: int, exc: Exception):
    if not isinstance(exc, ChunkFailed | ModelError | Unprocessable):
        log.exception("job %s chunk %d: unexpected error", job_id, chunk)
    reason = f"not scored: {exc}"
    log.error("job %s chunk %d: %s", job_id, chunk, reason)
    errors = csvio.format_errors((first_row + i, reason) for i in range(rows))
    failure = f"chunk {chunk} (rows {first_row}-{first_row + rows - 1}) {reason}"
    return rt.store.finish_chunk(job_id, chunk, b"", errors, 0, rows, failure=failure)


def score_chunk(rt: ModelRuntime, job_id: str, chunk: int, first_row: int, rows: int) -> str:
    start = rt.store.begin_chunk(job_id, chunk)
    skip = _skip(start)
    if skip or start is None:
        return skip
    try:
        _check_deliveries(rt, start)
        model, manifest = rt.get()
        layout = csvio.Layout.from_json(json.loads(start.layout), manifest.feature_names)
        parsed = csvio.parse_chunk(start.data or b"", layout, manifest.feature_names, first_row)
        class_ids, probabilities = score(model, parsed.features)
        output = csvio.format_scored(parsed, layout, manifest.class_names, class_ids, probabilities)
    except RETRYABLE:
        raise
    except Exception as exc:
        return _fail(rt, job_id, chunk, first_row, rows, exc)
    return rt.store.finish_chunk(
        job_id,
        chunk,
        output,
        csvio.format_errors(parsed.errors),
        len(parsed.kept),
        len(parsed.errors),
        model=(manifest.name, manifest.version),
    )


def score_instances(rt: ModelRuntime, job_id: str) -> str:
    start = rt.store.begin_chunk(job_id, 0)
    skip = _skip(start)
    if skip or start is None:
        return skip
    instances = json.loads(start.data or b"{}").get("instances", [])
    try:
        _check_deliveries(rt, start)
        model, manifest = rt.get()
        features = np.asarray(instances, dtype=np.float64)
        if features.ndim != 2 or features.shape[1] != len(manifest.feature_names):
            raise ModelError(
                f"model {manifest.version} takes {len(manifest.feature_names)} features"
            )
        class_ids, probabilities = score(model, features)
    except RETRYABLE:
        raise
    except Exception as exc:
        return _fail(rt, job_id, 0, 1, len(instances), exc)
    out = json.dumps(as_json(manifest.class_names, class_ids, probabilities)).encode()
    model_id = (manifest.name, manifest.version)
    return rt.store.finish_chunk(job_id, 0, out, b"", len(instances), 0, model=model_id)
