"""One JSON error shape for everything: {"error": {"code": ..., "message": ...}}."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from kombu.exceptions import OperationalError
from werkzeug.exceptions import HTTPException

from core.connection import REDIS_DOWN
from core.errors import ServiceError, Unavailable

log = logging.getLogger(__name__)


def _json(err: ServiceError):
    response = jsonify(err.to_dict())
    response.status_code = err.status
    if "retry_after" in err.extra:
        response.headers["Retry-After"] = str(err.extra["retry_after"])
    if err.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="inference"'
    return response


def init_app(app: Flask) -> None:
    @app.errorhandler(ServiceError)
    def service_error(err: ServiceError):
        return _json(err)

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException):
        code = (err.name or "error").lower().replace(" ", "_")
        body = {"error": {"code": code, "message": err.description or err.name}}
        response = jsonify(body)
        response.status_code = err.code or 500
        if err.code == 405 and err.valid_methods:  # type: ignore[attr-defined]
            response.headers["Allow"] = ", ".join(err.valid_methods)  # type: ignore[attr-defined]
        return response

    @app.errorhandler(REDIS_DOWN[0])
    @app.errorhandler(REDIS_DOWN[1])
    @app.errorhandler(OperationalError)
    def redis_down(err: Exception):
        log.warning("redis unreachable: %s", err)
        return _json(Unavailable("the job store (Redis) is unreachable; try again shortly"))

    @app.errorhandler(Exception)
    def unexpected(err: Exception):
        log.exception("unhandled error")
        return jsonify({"error": {"code": "internal_error", "message": "internal error"}}), 500
