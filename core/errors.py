"""The service's exception family: each error carries its HTTP status and a stable code."""

from __future__ import annotations


class ServiceError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, **extra: object) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def to_dict(self) -> dict[str, object]:
        return {"error": {"code": self.code, "message": self.message, **self.extra}}


class BadRequest(ServiceError):
    status = 400
    code = "bad_request"


class Unauthorized(ServiceError):
    status = 401
    code = "unauthorized"


class NotFound(ServiceError):
    status = 404
    code = "not_found"


class Conflict(ServiceError):
    status = 409
    code = "conflict"


class PayloadTooLarge(ServiceError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ServiceError):
    status = 415
    code = "unsupported_media_type"


class Unprocessable(ServiceError):
    status = 422
    code = "invalid_input"


class TooManyRequests(ServiceError):
    status = 429
    code = "rate_limited"


class Unavailable(ServiceError):
    status = 503
    code = "unavailable"


class Timeout(ServiceError):
    status = 504
    code = "timeout"


class ModelError(Exception):
    """A model that cannot be served: missing, or its bytes do not match its manifest."""
