"""Predictions of a few rows, scored by a worker through the queue."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, jsonify, request

from api.auth import tenant
from api.jobs import accepted, predictions_body
from api.services import services
from core import logs
from core.errors import BadRequest, PayloadTooLarge, ServiceError, Timeout, Unprocessable
from core.features import parse_instances, parse_row
from core.jobs import Job, JobStatus

bp = Blueprint("predict", __name__)


class ScoringFailed(ServiceError):
    status = 503
    code = "scoring_failed"


def _json_body() -> dict[str, Any]:
    limit = services().settings.max_json_bytes
    if (request.content_length or 0) > limit:
        raise PayloadTooLarge(f"the body is over {limit} bytes", field="body")
    raw = request.stream.read(limit + 1)  # bounded, also without a Content-Length
    if len(raw) > limit:
        raise PayloadTooLarge(f"the body is over {limit} bytes", field="body")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object", field="body")
    return body


def _submit(rows: list[list[float]], wait: float) -> tuple[str, Job | None, bytes | None]:
    """Record a prediction job and put it on the predict lane (api/gate.py); with ``wait``,
    wait that long for it to end. Its id, and its record and answers as they then are (None if
    not waited for)."""
    svc = services()
    job_id = svc.jobs.new_id()
    logs.job_id.set(job_id)
    data = json.dumps({"instances": rows}).encode()
    ended = svc.gate.submit(job_id, tenant(), len(rows), data, wait)
    if ended is not None:
        return job_id, *ended
    if wait <= 0:
        return job_id, None, None
    return job_id, *svc.jobs.get_with_output(job_id)  # not ended in time, or its end unread


@bp.post("/predict")
def predict_one():
    """Score one row and wait for the answer (the original service's call).
    ---
    post:
      tags: [predict]
      summary: Predict one row (synchronous)
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: "#/components/schemas/PredictRequest"}
      responses:
        200:
          description: The prediction.
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Prediction"}
        400: {$ref: "#/components/responses/Error"}
        413: {$ref: "#/components/responses/Error"}
        422: {$ref: "#/components/responses/Error"}
        503: {$ref: "#/components/responses/Error"}
        504: {$ref: "#/components/responses/Error"}
    """
    svc = services()
    body = _json_body()
    if "features" not in body:
        raise BadRequest("the body needs a 'features' field", field="features")
    row = parse_row(body["features"], svc.manifest().feature_names, "features")
    job_id, job, output = _submit([row], svc.settings.predict_timeout_seconds)
    if job is None or not job.status.finished:
        raise Timeout(
            f"no answer within {svc.settings.predict_timeout_seconds:g}s; the job goes on",
            job_id=job_id,
            status_url=f"/v1/jobs/{job_id}",
        )
    if job.status != JobStatus.SUCCEEDED:
        raise ScoringFailed(f"the prediction {job.status.value}: {job.error}", job_id=job_id)
    answer = predictions_body(job, output)["predictions"][0]
    if "error" in answer:
        raise Unprocessable(f"features: {answer['error']}", field="features", job_id=job_id)
    return jsonify({**answer, "model_version": job.model_version})


@bp.post("/v1/predict")
def predict_many():
    """Submit rows for scoring; optionally wait for the answer.
    ---
    post:
      tags: [predict]
      summary: Predict instances (asynchronous, or wait up to ?wait= seconds)
      parameters:
        - in: query
          name: wait
          required: false
          description: Seconds to wait for the answer (capped by MAX_WAIT_SECONDS).
          schema: {type: number, minimum: 0}
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: "#/components/schemas/InstancesRequest"}
      responses:
        200:
          description: Finished within ?wait=.
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Predictions"}
        202:
          description: Queued; poll status_url.
          headers:
            Location: {schema: {type: string}, description: The job's status URL.}
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Accepted"}
        400: {$ref: "#/components/responses/Error"}
        413: {$ref: "#/components/responses/Error"}
        422: {$ref: "#/components/responses/Error"}
        503: {$ref: "#/components/responses/Error"}
    """
    svc = services()
    wait = _wait_seconds()
    body = _json_body()
    if "instances" not in body:
        raise BadRequest("the body needs an 'instances' field", field="instances")
    features = svc.manifest().feature_names
    matrix = parse_instances(body["instances"], features, svc.settings.max_instances)
    job_id, job, output = _submit(matrix.tolist(), wait)
    if job is not None and job.status.finished:
        return jsonify(predictions_body(job, output))
    return accepted(job_id)


def _wait_seconds() -> float:
    raw = request.args.get("wait")
    if raw is None:
        return 0.0
    try:
        seconds = float(raw)
    except ValueError:
        raise BadRequest(
            f"wait must be a number of seconds, not {raw[:20]!r}", field="wait"
        ) from None
    if not seconds >= 0:  # also refuses NaN
        raise BadRequest("wait must be zero or more seconds", field="wait")
    return min(seconds, services().settings.max_wait_seconds)
