"""What a task does, as plain functions of a runtime: score one chunk, or one prediction job.

Each is safe to run twice (the job store counts a chunk once) and checks the job record before
scoring, so a cancelled job starts no new chunk whatever Celery still holds.
"""

from __future__ import annotations

import json
import logging

import numpy as np

from core import csvio
from core.errors import ModelError, Unprocessable
from worker.runtime import ModelRuntime
from worker.scoring import as_json, score

log = logging.getLogger(__name__)


def _fail_rows(first_row: int, rows: int, reason: str) -> bytes:
    return csvio.format_errors((first_row + i, reason) for i in range(rows))


def score_chunk(rt: ModelRuntime, job_id: str, chunk: int, first_row: int, rows: int) -> str:
    start = rt.store.begin_chunk(job_id, chunk)
    if start is None:
        return "gone"
    if start.status.finished:
        return f"skipped: job {start.status.value}"
    if start.data is None:
        return "duplicate"  # already done by an earlier delivery
    cap = rt.settings.max_deliveries
    if start.deliveries > cap:
        reason = (
            f"not scored: this chunk was delivered {start.deliveries - 1} times and never finished"
        )
        log.error("job %s chunk %d: %s", job_id, chunk, reason)
        failure = f"chunk {chunk} (rows {first_row}-{first_row + rows - 1}) failed: {reason}"
        errors = _fail_rows(first_row, rows, reason)
        return rt.store.finish_chunk(job_id, chunk, b"", errors, 0, rows, failure=failure)
    try:
        model, manifest = rt.get()
        layout = csvio.Layout.from_json(json.loads(start.layout), manifest.feature_names)
    except (ModelError, Unprocessable) as exc:
        reason = f"not scored: {exc}"
        return rt.store.finish_chunk(
            job_id, chunk, b"", _fail_rows(first_row, rows, reason), 0, rows, failure=str(exc)
        )
    parsed = csvio.parse_chunk(start.data, layout, manifest.feature_names, first_row)
    class_ids, probabilities = score(model, parsed.features)
    output = csvio.format_scored(parsed, layout, manifest.class_names, class_ids, probabilities)
    errors = csvio.format_errors(parsed.errors)
    model_id = (manifest.name, manifest.version)
    return rt.store.finish_chunk(
        job_id, chunk, output, errors, len(parsed.kept), len(parsed.errors), model=model_id
    )


def score_instances(rt: ModelRuntime, job_id: str) -> str:
    start = rt.store.begin_chunk(job_id, 0)
    if start is None:
        return "gone"
    if start.status.finished:
        return f"skipped: job {start.status.value}"
    if start.data is None:
        return "duplicate"
    instances = json.loads(start.data)["instances"]
    rows = len(instances)
    try:
        model, manifest = rt.get()
        features = np.asarray(instances, dtype=np.float64)
        if features.ndim != 2 or features.shape[1] != len(manifest.feature_names):
            raise ModelError(
                f"model {manifest.version} takes {len(manifest.feature_names)} features"
            )
    except ModelError as exc:
        return rt.store.finish_chunk(job_id, 0, b"", b"", 0, rows, failure=str(exc))
    class_ids, probabilities = score(model, features)
    out = json.dumps(as_json(manifest.class_names, class_ids, probabilities)).encode()
    model_id = (manifest.name, manifest.version)
    return rt.store.finish_chunk(job_id, 0, out, b"", rows, 0, model=model_id)
