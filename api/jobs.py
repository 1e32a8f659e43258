"""Batch jobs: CSV upload, status, result and errors downloads, cancel."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from typing import BinaryIO

from flask import Blueprint, Response, jsonify, request, url_for

from api.auth import tenant
from api.services import services
from core import csvio, logs
from core.errors import Conflict, NotFound, Unprocessable, UnsupportedMediaType
from core.jobs import Job, JobStatus
from core.queue import SCORE_CHUNK

bp = Blueprint("jobs", __name__)
log = logging.getLogger(__name__)

CSV_TYPES = ("text/csv", "application/csv", "text/plain")
#: Chunks of input written to Redis per round trip while an upload streams in, and the most
#: bytes they may hold (a chunk can be CHUNK_BYTES: eight of them would be 64 MiB in memory).
PUT_BATCH = 8
PUT_BYTES = 4 << 20
#: Bytes read from the request body at a time.
READ_BUFFER = 1 << 20


def job_body(job: Job) -> dict:
    return {
        "job_id": job.id,
        "kind": job.kind,
        "status": job.status.value,
        "progress": {
            "rows_total": job.rows_total,
            "rows_done": job.rows_done,
            "rows_failed": job.rows_failed,
        },
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "model": {"name": job.model_name, "version": job.model_version},
        "error": job.error,
        "result_url": url_for("jobs.result", job_id=job.id),
        "errors_url": url_for("jobs.errors", job_id=job.id),
    }


def predictions_body(job: Job, raw: bytes | None = None) -> dict:
    """A finished prediction job's answers (``raw``: as stored, else read now), as JSON."""
    if raw is None:
        raw = services().redis.get(services().jobs.key(job.id, "out", 0))
    return {
        "job_id": job.id,
        "status": job.status.value,
        "predictions": json.loads(raw) if raw else [],
        "model": {"name": job.model_name, "version": job.model_version},
        "error": job.error,
    }


def accepted(job_id: str) -> Response:
    """202 with where to find the job."""
    status_url = url_for("jobs.status", job_id=job_id)
    response = jsonify(
        {"job_id": job_id, "status": JobStatus.QUEUED.value, "status_url": status_url}
    )
    response.status_code = 202
    response.headers["Location"] = status_url
    return response


def load_job(job_id: str) -> Job:
    """The job, or 404 for an id that is unknown, expired or not an id at all."""
    try:
        uuid.UUID(job_id)
    except ValueError:
        raise NotFound(f"no job {job_id!r}", field="job_id") from None
    job = services().jobs.get(job_id)
    logs.job_id.set(job_id)
    if job is None or job.owner != tenant():
        raise NotFound(f"no job {job_id!r} (unknown, or expired)", field="job_id")
    return job


def _upload() -> BinaryIO:
    """The uploaded file, read as it arrives: raw text/csv or multipart field "file"."""
    mimetype = request.mimetype
    if mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            raise UnsupportedMediaType(
                "multipart upload needs the CSV in a field named 'file'", field="file"
            )
        return upload.stream
    if mimetype in CSV_TYPES:
        stream = request.stream
        if isinstance(stream, io.RawIOBase):
            # werkzeug's LimitedStream is unbuffered: its readline reads a byte per call.
            return io.BufferedReader(stream, READ_BUFFER)
        return stream
    raise UnsupportedMediaType(
        "send the CSV as the body with Content-Type: text/csv, or as multipart field 'file'",
        field="Content-Type",
    )


@bp.post("/v1/jobs")
def submit():
    """Submit a CSV file for batch scoring.
    ---
    post:
      tags: [jobs]
      summary: Submit a CSV batch job
      description: >
        The CSV may have a header row (features found by name in any order; other columns pass
        through to the result) or none (the columns are the model's features in order).
        Rows that cannot be scored are listed under the job's errors; the job still succeeds.
      requestBody:
        required: true
        content:
          text/csv:
            schema: {type: string}
          multipart/form-data:
            schema:
              type: object
              properties:
                file: {type: string, format: binary}
              required: [file]
      responses:
        202:
          description: Accepted; poll status_url.
          headers:
            Location: {schema: {type: string}, description: The job's status URL.}
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Accepted"}
        400: {$ref: "#/components/responses/Error"}
        413: {$ref: "#/components/responses/Error"}
        415: {$ref: "#/components/responses/Error"}
        422: {$ref: "#/components/responses/Error"}
        503: {$ref: "#/components/responses/Error"}
    """
    svc = services()
    settings = svc.settings
    manifest = svc.manifest()
    layout, chunks = csvio.split_upload(
        _upload(),
        manifest.feature_names,
        settings.chunk_rows,
        settings.max_rows_per_job,
        settings.max_columns,
        settings.max_row_bytes,
        chunk_bytes=settings.chunk_bytes,
    )
    job_id = svc.jobs.new_id()
    logs.job_id.set(job_id)
    tasks: list[list] = []
    rows_total = 0
    try:
        pending: list[tuple[int, bytes]] = []
        held = 0
        for chunk in chunks:
            pending.append((chunk.index, chunk.data))
            held += len(chunk.data)
            tasks.append([job_id, chunk.index, chunk.first_row, chunk.rows])
            rows_total += chunk.rows
            if len(pending) >= PUT_BATCH or held >= PUT_BYTES:
                svc.jobs.put_inputs(job_id, pending)
                pending, held = [], 0
        if pending:
            svc.jobs.put_inputs(job_id, pending)
        if rows_total == 0:
            raise Unprocessable("the file has a header row but no data rows", field="file")
        svc.jobs.create(
            job_id,
            "batch",
            tenant(),
            rows_total,
            len(tasks),
            json.dumps(layout.to_json()),
            chunks=[(first, rows) for _, _, first, rows in tasks],
        )
        svc.send(SCORE_CHUNK, tasks)
        log.info("job queued: %d rows in %d chunks", rows_total, len(tasks))
    except BaseException:
        try:
            svc.jobs.discard(job_id, len(tasks))
        finally:
            raise
    return accepted(job_id)


@bp.get("/v1/jobs/<job_id>")
def status(job_id: str):
    """A job's status and progress.
    ---
    get:
      tags: [jobs]
      summary: Job status and progress
      parameters:
        - {in: path, name: job_id, required: true, schema: {type: string}}
      responses:
        200:
          description: The job record.
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Job"}
        404: {$ref: "#/components/responses/Error"}
        503: {$ref: "#/components/responses/Error"}
    """
    return jsonify(job_body(load_job(job_id)))


def _finished(job: Job) -> Job:
    if not job.status.finished:
        raise Conflict(
            f"job {job.id} is {job.status.value}; its output is ready when it ends",
            status=job.status.value,
        )
    return job


def _csv_download(job: Job, header: list[str], part: str, name: str) -> Response:
    store = services().jobs

    def generate() -> Iterator[bytes]:
        yield csvio.write_rows([header])
        yield from store.iter_parts(job.id, part, job.chunks_total)

    response = Response(generate(), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{job.id}-{name}.csv"'
    return response


@bp.get("/v1/jobs/<job_id>/result")
def result(job_id: str):
    """The scored rows.
    ---
    get:
      tags: [jobs]
      summary: Download the result
      description: >
        Batch jobs: CSV, one row per scored input row in input order: the input's non-feature
        columns, the features, prediction, proba_<class> per class. Prediction jobs: JSON.
      parameters:
        - {in: path, name: job_id, required: true, schema: {type: string}}
      responses:
        200:
          description: The result.
          content:
            text/csv:
              schema: {type: string}
            application/json:
              schema: {$ref: "#/components/schemas/Predictions"}
        404: {$ref: "#/components/responses/Error"}
        409: {$ref: "#/components/responses/Error"}
        503: {$ref: "#/components/responses/Error"}
    """
    job = _finished(load_job(job_id))
    if job.kind == "predict":
        return jsonify(predictions_body(job))
    manifest = services().manifest()
    layout = csvio.Layout.from_json(json.loads(job.layout or "{}"), manifest.feature_names)
    header = layout.output_header(manifest.feature_names, manifest.class_names)
    return _csv_download(job, header, "out", "result")


@bp.get("/v1/jobs/<job_id>/errors")
def errors(job_id: str):
    """The rows that were not scored, and why.
    ---
    get:
      tags: [jobs]
      summary: Download the errors
      parameters:
        - {in: path, name: job_id, required: true, schema: {type: string}}
      responses:
        200:
          description: 'CSV "row,error": the 1-based data row number and the reason.'
          content:
            text/csv:
              schema: {type: string}
        404: {$ref: "#/components/responses/Error"}
        409: {$ref: "#/components/responses/Error"}
        503: {$ref: "#/components/responses/Error"}
    """
    job = _finished(load_job(job_id))
    return _csv_download(job, ["row", "error"], "err", "errors")


@bp.delete("/v1/jobs/<job_id>")
def cancel(job_id: str):
    """Cancel a job.
    ---
    delete:
      tags: [jobs]
      summary: Cancel a job
      description: No chunk starts after it; rows already scored stay readable.
      parameters:
        - {in: path, name: job_id, required: true, schema: {type: string}}
      responses:
        200:
          description: The job, now cancelled.
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Job"}
        404: {$ref: "#/components/responses/Error"}
        409: {$ref: "#/components/responses/Error"}
        503: {$ref: "#/components/responses/Error"}
    """
    job = load_job(job_id)
    outcome = services().jobs.cancel(job.id)
    if outcome == "gone":
        raise NotFound(f"no job {job_id!r} (unknown, or expired)", field="job_id")
    if outcome != JobStatus.CANCELLED.value:
        raise Conflict(f"job {job.id} already {outcome}", status=outcome)
    return jsonify(job_body(load_job(job_id)))
