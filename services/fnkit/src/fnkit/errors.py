"""The status-code contract, in one place.

Knative's broker reads a function's status code as its retry instruction: 2xx is done,
most 4xx are never retried (404, 408, 409 and 429 are), 5xx and timeouts are retried and
finally dead-lettered. Every exception a handler or route raises is mapped here, so that a
service never has to pick a status code by hand.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any


class FunctionError(Exception):
    """An error with a deliberate HTTP status; the base of every error fnkit maps."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class BadEvent(FunctionError):
    """The request is not a valid CloudEvent (never retried)."""

    status = 400
    code = "bad_event"


class UnsupportedMediaType(FunctionError):
    """The request is not a CloudEvent at all, or uses batch mode (never retried)."""

    status = 415
    code = "unsupported_media_type"


class PayloadTooLarge(FunctionError):
    status = 413
    code = "payload_too_large"


class NotFound(FunctionError):
    status = 404
    code = "not_found"


class Conflict(FunctionError):
    """A conflicting state; Knative retries 409, so use it only for 'try again later'."""

    status = 409
    code = "conflict"


class PreconditionFailed(FunctionError):
    status = 412
    code = "precondition_failed"


class Rejected(FunctionError):
    """A business rejection: the event is well formed but cannot be accepted (not retried)."""

    status = 422
    code = "rejected"


class Unavailable(FunctionError):
    """Transient trouble in a dependency: 503, so the broker retries."""

    status = 503
    code = "unavailable"


class EmitError(Unavailable):
    """The broker did not accept an emitted event after every retry."""

    code = "emit_failed"


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    status: int
    code: str
    message: str
    details: Any = None

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        return {"error": error}

    @property
    def retryable(self) -> bool:
        return self.status >= 500 or self.status in (404, 408, 409, 429)


def _infrastructure_error(exc: BaseException) -> ErrorResponse | None:
    """Recognise a dependency outage without importing clients a service does not use."""
    module = type(exc).__module__
    if module.startswith("pymongo"):
        from pymongo.errors import (
            ConnectionFailure,
            ExecutionTimeout,
            OperationFailure,
            WTimeoutError,
        )

        if isinstance(exc, ConnectionFailure | ExecutionTimeout | WTimeoutError):
            return ErrorResponse(503, "database_unavailable", "MongoDB is unavailable; retry later")
        # FerretDB's SQLite backend answers a write it could not lock in time with this
        # rather than waiting: the server is busy, not the request wrong.
        if isinstance(exc, OperationFailure) and "SQLITE_BUSY" in str(exc):
            return ErrorResponse(503, "database_busy", "the database is busy; retry later")
    if module.startswith(("urllib3", "minio")):
        from minio.error import ServerError
        from urllib3.exceptions import HTTPError as Urllib3Error

        if isinstance(exc, Urllib3Error | ServerError):
            return ErrorResponse(
                503, "object_storage_unavailable", "object storage is unavailable; retry later"
            )
    if isinstance(exc, TimeoutError | asyncio.TimeoutError | ConnectionError):
        return ErrorResponse(503, "timeout", "a dependency timed out; retry later")
    return None


def error_response(exc: BaseException) -> ErrorResponse:
    """Map any exception to the response the contract promises for it."""
    if isinstance(exc, FunctionError):
        return ErrorResponse(exc.status, exc.code, exc.message, exc.details)
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        details = [
            {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        return ErrorResponse(422, "invalid_data", "event data failed validation", details)
    infra = _infrastructure_error(exc)
    if infra is not None:
        return infra
    return ErrorResponse(500, "internal_error", "internal error; see the function's log")
