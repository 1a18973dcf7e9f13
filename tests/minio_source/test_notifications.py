"""MinIO records -> CloudEvent attributes, and the bearer-token check."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from minio_source.notifications import (
    BadNotification,
    S3Record,
    Unauthorized,
    check_bearer,
    parse_notification,
)

from tests.minio_source.records import notification, s3_record

pytestmark = pytest.mark.unit


def test_a_record_becomes_type_subject_bucket_and_decoded_key() -> None:
    record = S3Record(s3_record("uploads", "holiday pics/ä+ö.jpg"))

    assert record.event_type == "io.minio.s3.ObjectCreated.Put"
    assert record.bucket == "uploads"
    assert record.key == "holiday pics/ä+ö.jpg"
    assert record.subject == "uploads/holiday pics/ä+ö.jpg"


@pytest.mark.parametrize(
    ("event_name", "event_type"),
    [
        (
            "s3:ObjectCreated:CompleteMultipartUpload",
            "io.minio.s3.ObjectCreated.CompleteMultipartUpload",
        ),
        ("s3:ObjectRemoved:Delete", "io.minio.s3.ObjectRemoved.Delete"),
        ("s3:ObjectAccessed:Get", "io.minio.s3.ObjectAccessed.Get"),
    ],
)
def test_the_type_keeps_minios_event_name(event_name: str, event_type: str) -> None:
    assert S3Record(s3_record("b", "k", event_name=event_name)).event_type == event_type


def test_a_redelivered_record_has_the_same_id() -> None:
    raw = s3_record("uploads", "cat.jpg", sequencer="18EBD8A48EAAB605")

    first, again = S3Record(raw), S3Record(orjson.loads(orjson.dumps(raw)))

    assert first.event_id == again.event_id


@pytest.mark.parametrize(
    "change",
    [
        {"sequencer": "18EBD8A48EAAB606"},  # the same object uploaded again
        {"etag": "0" * 32},
        {"event_name": "s3:ObjectRemoved:Delete"},
    ],
)
def test_a_different_occurrence_has_a_different_id(change: dict[str, str]) -> None:
    base: dict[str, Any] = {
        "etag": "5d41402abc4b2a76b9719d911017c592",
        "sequencer": "18EBD8A48EAAB605",
    }

    one = S3Record(s3_record("uploads", "cat.jpg", **base))
    other = S3Record(s3_record("uploads", "cat.jpg", **{**base, **change}))

    assert one.event_id != other.event_id


def test_a_notification_yields_every_record_in_order() -> None:
    body = orjson.dumps(notification(s3_record("u", "a.jpg"), s3_record("u", "b.jpg")))

    assert [r.key for r in parse_notification(body)] == ["a.jpg", "b.jpg"]


@pytest.mark.parametrize("body", [b"", b"{}", b'{"Records": []}', b'{"EventName": "s3:TestEvent"}'])
def test_test_requests_without_records_yield_nothing(body: bytes) -> None:
    assert parse_notification(body) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"Records": "x"}', "must be a list"),
        (b'{"Records": [7]}', "Records[0] must be an object"),
        (b'{"Records": [{"eventName": "s3:ObjectCreated:Put"}]}', "not an S3 record"),
        (
            b'{"Records": [{"eventName": "boom", "s3": {"bucket": {"name": "b"}, '
            b'"object": {"key": "k"}}}]}',
            "not an S3 record",
        ),
    ],
)
def test_malformed_notifications_are_refused_precisely(body: bytes, message: str) -> None:
    with pytest.raises(BadNotification) as refused:
        parse_notification(body)

    assert message in refused.value.message
    assert refused.value.status == 400


@pytest.mark.parametrize("header", ["Bearer s3cret", "bearer s3cret", "Bearer  s3cret "])
def test_the_right_bearer_token_passes(header: str) -> None:
    check_bearer(header, "s3cret")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "s3cret",
        "Bearer",
        "Bearer wrong",
        "Basic s3cret",
        "Bearer s3cret2",
        "Bearer s3cre",
        "Bearer ş3cret",
    ],
)
def test_anything_else_is_unauthorized(header: str | None) -> None:
    with pytest.raises(Unauthorized) as refused:
        check_bearer(header, "s3cret")

    assert refused.value.status == 401
