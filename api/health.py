"""Liveness, readiness and the served model."""

from __future__ import annotations

from flask import Blueprint, jsonify

from api.services import services
from core.connection import REDIS_DOWN

bp = Blueprint("health", __name__)


@bp.get("/health")
def health():
    """Liveness: the process is up.
    ---
    get:
      tags: [health]
      summary: Liveness (the original service's path)
      responses:
        200:
          description: The API process is up.
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Health"}
    """
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    """Readiness: Redis answers and a worker holds the model.
    ---
    get:
      tags: [health]
      summary: Readiness
      responses:
        200:
          description: Redis answers and at least one worker has the model loaded.
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Ready"}
        503:
          description: Not ready; the reasons say why.
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Ready"}
    """
    svc = services()
    reasons: list[str] = []
    workers = []
    try:
        svc.redis.ping()
        workers = svc.presence.live()
    except REDIS_DOWN as exc:
        reasons.append(f"redis unreachable: {exc}")
    serving = [w for w in workers if w.model_version and w.kind == "celery"]
    streaming = [w for w in workers if w.model_version and w.kind == "stream"]
    if not reasons and not serving:
        failing = sorted({w.error for w in workers if w.error})
        reasons = [f"a worker cannot load the model: {e}" for e in failing]
        reasons = reasons or ["no worker has the model loaded"]
    body = {
        "status": "ready" if not reasons else "unavailable",
        "workers": len(serving),
        "stream_workers": len(streaming),
        "model_versions": sorted({w.model_version for w in serving + streaming}),
        "reasons": reasons,
    }
    return jsonify(body), 200 if not reasons else 503


@bp.get("/v1/model")
def model():
    """The active model's manifest.
    ---
    get:
      tags: [model]
      summary: The served model's manifest
      responses:
        200:
          description: Feature names in order, class names, metrics, versions, sha256.
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Manifest"}
        503:
          description: No worker has loaded a model yet.
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Error"}
    """
    return jsonify(services().manifest().to_dict())
