"""What the workers do, as plain functions of a runtime: score one chunk of a CSV job (a Celery
task), or a batch of prediction jobs taken off the predict lane (worker/predictions.py).

Each is safe to run twice (the job store counts a chunk once) and checks the job record before
scoring, so a cancelled job starts no new chunk whatever Celery still holds. A chunk that cannot
be scored fails its rows with the reason, so a job always ends; an unreachable Redis or a task
over its time limit goes back to the queue instead, under the same delivery cap.
"""

from __future__ import annotations

import json
import logging
import time

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded

from core import arrowcsv, csvio, logs, metrics
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


def _fail(rt: ModelRuntime, job_id: str, chunk: int, first_row: int, rows: int, exc: Exception,
          reply_to: str = ""):  # fmt: skip
    if not isinstance(exc, ChunkFailed | ModelError | Unprocessable):
        log.exception("job %s chunk %d: unexpected error", job_id, chunk)
    reason = f"not scored: {exc}"
    log.error("job %s chunk %d: %s", job_id, chunk, reason)
    errors = csvio.format_errors((first_row + i, reason) for i in range(rows))
    failure = f"chunk {chunk} (rows {first_row}-{first_row + rows - 1}) {reason}"
    return rt.store.finish_chunk(
        job_id, chunk, b"", errors, 0, rows, failure=failure, reply_to=reply_to
    )


def _observe(kind: str, start: ChunkStart, began: float, outcome: str, ok: int, failed: int):
    """Metrics and the log line of one delivery that did work."""
    m = metrics.get()
    m.chunk_seconds.labels(kind).observe(time.perf_counter() - began)
    m.rows.labels("scored").inc(ok)
    m.rows.labels("failed").inc(failed)
    if start.deliveries > 1:
        m.redeliveries.inc()
    if outcome in ("succeeded", "failed", "cancelled"):
        m.jobs.labels(kind, outcome).inc()
        # A line per CSV job; predictions, hundreds a second, log only when they fail.
        level = logging.DEBUG if kind == "predict" and outcome == "succeeded" else logging.INFO
        log.log(level, "job %s", outcome)
    return outcome


def score_chunk(rt: ModelRuntime, job_id: str, chunk: int, first_row: int, rows: int) -> str:
    logs.job_id.set(job_id)
    began = time.perf_counter()
    start = rt.store.begin_chunk(job_id, chunk)
    skip = _skip(start)
    if skip or start is None:
        return skip
    try:
        _check_deliveries(rt, start)
        model, manifest = rt.get()
        layout = csvio.Layout.from_json(json.loads(start.layout), manifest.feature_names)
        output, errors, ok, failed = _score_rows(
            model, manifest, layout, start.data or b"", first_row, rows
        )
    except RETRYABLE:
        raise
    except Exception as exc:
        outcome = _fail(rt, job_id, chunk, first_row, rows, exc)
        return _observe("batch", start, began, outcome, 0, rows)
    outcome = rt.store.finish_chunk(
        job_id, chunk, output, errors, ok, failed, model=(manifest.name, manifest.version)
    )
    return _observe("batch", start, began, outcome, ok, failed)


def _score_rows(model, manifest, layout: csvio.Layout, data: bytes, first_row: int, rows: int):
    """(result CSV, errors CSV, rows scored, rows failed) of one chunk: with pyarrow when every
    row can be scored as it is, else row by row with the csv module."""
    fast = arrowcsv.parse(data, layout, rows)
    if fast is not None:
        scored = score(model, fast.features)
        if not scored.failed:
            names = manifest.class_names
            output = arrowcsv.format_scored(
                fast, layout, names, scored.class_ids, scored.probabilities
            )
            if output is not None:
                return output, b"", rows, 0
    parsed = csvio.parse_chunk(data, layout, manifest.feature_names, first_row)
    scored = score(model, parsed.features)
    ok = scored.ok()
    parsed = parsed.drop(scored.failed)
    output = csvio.format_scored(
        parsed, layout, manifest.class_names, scored.class_ids[ok], scored.probabilities[ok]
    )
    errors = csvio.format_errors(parsed.errors)
    return output, errors, len(parsed.kept), len(parsed.errors)


def score_instance_batch(rt: ModelRuntime, job_ids: list[str]) -> str:
    """Prediction jobs that arrived together: one round trip to start them all, one vectorised
    call to score them, one round trip to finish them. Each stays its own job."""
    began = time.perf_counter()
    live: list[tuple[str, ChunkStart, list]] = []
    for job_id, start in zip(job_ids, rt.store.begin_many(job_ids), strict=True):
        if _skip(start) or start is None:
            continue
        rows = json.loads(start.data or b"{}").get("instances", [])
        try:
            _check_deliveries(rt, start)
        except ChunkFailed as exc:
            _fail_prediction(rt, job_id, start, began, len(rows), exc)
            continue
        live.append((job_id, start, rows))
    if not live:
        return "nothing to do"
    try:
        model, manifest = rt.get()
        features = np.asarray([row for _, _, rows in live for row in rows], dtype=np.float64)
        if features.ndim != 2 or features.shape[1] != len(manifest.feature_names):
            raise ModelError(
                f"model {manifest.version} takes {len(manifest.feature_names)} features"
            )
        scored = score(model, features)
    except RETRYABLE:
        raise
    except Exception as exc:
        for job_id, start, rows in live:
            _fail_prediction(rt, job_id, start, began, len(rows), exc)
        return "failed"
    answers = as_json(manifest.class_names, scored.class_ids, scored.probabilities)
    model_id = (manifest.name, manifest.version)
    finished = []
    at = 0
    for job_id, start, rows in live:
        mine = answers[at : at + len(rows)]
        failed = {i: scored.failed[at + i] for i in range(len(rows)) if at + i in scored.failed}
        for i, reason in failed.items():
            mine[i] = {"error": reason}
        errors = csvio.format_errors((i + 1, reason) for i, reason in sorted(failed.items()))
        finished.append((job_id, 0, json.dumps(mine).encode(), errors,
                         len(rows) - len(failed), len(failed), model_id, "",
                         start.reply_to))  # fmt: skip
        at += len(rows)
    outcomes = rt.store.finish_many(finished)
    for (job_id, start, _), args, outcome in zip(live, finished, outcomes, strict=True):
        logs.job_id.set(job_id)
        _observe("predict", start, began, outcome, args[4], args[5])
    return f"scored {len(live)} jobs"


def _fail_prediction(rt: ModelRuntime, job_id: str, start: ChunkStart, began: float, rows: int,
                     exc: Exception) -> None:  # fmt: skip
    logs.job_id.set(job_id)
    outcome = _fail(rt, job_id, 0, 1, rows, exc, start.reply_to)
    _observe("predict", start, began, outcome, 0, rows)
