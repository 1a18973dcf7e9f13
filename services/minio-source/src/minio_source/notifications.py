"""MinIO's webhook notifications as CloudEvents: parsing, authentication, event identity.

MinIO posts `{"EventName": ..., "Key": ..., "Records": [<S3 record>, ...]}` with
`Authorization: Bearer <token>`. Each record becomes one CloudEvent whose `id` is derived
from the record itself, so that a notification MinIO redelivers from its queue carries the
very same ids and consumers can drop the duplicates.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Any, Final
from urllib.parse import unquote_plus

import orjson
from fnkit import FunctionError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

TYPE_PREFIX: Final = "io.minio.s3."


class Unauthorized(FunctionError):
    """No valid bearer token: the request is not from our MinIO."""

    status = 401
    code = "unauthorized"


class BadNotification(FunctionError):
    """The body is not a MinIO notification."""

    status = 400
    code = "bad_notification"


class _Bucket(BaseModel):
    name: str = Field(min_length=1)


class _Object(BaseModel):
    key: str = Field(min_length=1)
    eTag: str = ""
    versionId: str = ""
    sequencer: str = ""


class _S3(BaseModel):
    bucket: _Bucket
    object: _Object


class _Record(BaseModel):
    """The fields of an S3 record that the event's attributes come from (MinIO always sets them)."""

    model_config = ConfigDict(extra="allow")

    eventName: str = Field(pattern=r"^s3:[A-Za-z]+:[A-Za-z]+$")
    eventTime: datetime | None = None
    s3: _S3


class S3Record:
    """One record of a notification: the raw JSON, and what the CloudEvent is made of."""

    __slots__ = ("bucket", "event_id", "event_name", "event_time", "event_type", "key", "raw")

    def __init__(self, raw: dict[str, Any]) -> None:
        record = _Record.model_validate(raw)
        self.raw = raw
        self.event_name = record.eventName
        self.event_type = TYPE_PREFIX + record.eventName.removeprefix("s3:").replace(":", ".")
        self.event_time = record.eventTime
        self.bucket = record.s3.bucket.name
        # MinIO sends keys form-encoded (Go's url.QueryEscape): '+' is a space.
        self.key = unquote_plus(record.s3.object.key)
        obj = record.s3.object
        identity = "\x1f".join(
            (record.eventName, self.bucket, obj.key, obj.eTag, obj.versionId, obj.sequencer)
        )
        self.event_id = hashlib.sha256(identity.encode()).hexdigest()[:32]

    @property
    def subject(self) -> str:
        return f"{self.bucket}/{self.key}"


def check_bearer(authorization: str | None, token: str) -> None:
    """Raise Unauthorized unless the header is `Bearer <token>`, compared in constant time."""
    scheme, _, given = (authorization or "").partition(" ")
    if not (
        scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
    ):
        raise Unauthorized("a valid bearer token is required")


def parse_notification(body: bytes) -> list[S3Record]:
    """The records of a notification; a body without records (a test request) has none."""
    try:
        document = orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise BadNotification(f"notification body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise BadNotification("notification body must be a JSON object")
    raw_records = document.get("Records") or []
    if not isinstance(raw_records, list):
        raise BadNotification("'Records' must be a list")
    records = []
    for index, raw in enumerate(raw_records):
        if not isinstance(raw, dict):
            raise BadNotification(f"Records[{index}] must be an object")
        try:
            records.append(S3Record(raw))
        except ValidationError as exc:
            details = [
                {"loc": [index, *e["loc"]], "msg": e["msg"]}
                for e in exc.errors(include_url=False, include_input=False)
            ]
            raise BadNotification(
                f"Records[{index}] is not an S3 record", details=details
            ) from None
    return records
