"""The webhook in-process: authentication, one CloudEvent per record, 5xx when not delivered."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from fnkit.events import event_data, parse_event
from minio_source.config import Settings
from minio_source.main import create_app
from pydantic import SecretStr, ValidationError

from tests.fnkit.helpers import Served, Sink, serve
from tests.minio_source.records import notification, s3_record

pytestmark = pytest.mark.unit

TOKEN = "test-token-1234"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def webhook(sink: Sink) -> AsyncIterator[Served]:
    settings = Settings(
        environment="dev",
        webhook_auth_token=SecretStr(TOKEN),
        k_sink=sink.url,
        emit_attempts=2,
        emit_backoff_seconds=0,
    )
    async with serve(create_app(settings)) as served:
        yield served


async def post(webhook: Served, body: Any, headers: dict[str, str] | None = None) -> Any:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return await webhook.client.post(
        "/minio/webhook",
        content=content,
        headers={"content-type": "application/json", **(AUTH if headers is None else headers)},
    )


def delivered(sink: Sink) -> list[Any]:
    return [parse_event(r.headers, r.body) for r in sink.requests]


async def test_each_record_is_posted_to_the_sink_as_a_cloudevent(
    webhook: Served, sink: Sink
) -> None:
    first, second = s3_record("uploads", "a b/ä.jpg"), s3_record("uploads", "c.png")

    response = await post(webhook, notification(first, second))

    assert response.status_code == 200
    events = delivered(sink)
    assert response.json() == {"accepted": 2, "ids": [e.get_id() for e in events]}
    event = events[0]
    assert event.get_type() == "io.minio.s3.ObjectCreated.Put"
    assert event.get_source() == "/knative-playbook/minio-source"
    assert event.get_subject() == "uploads/a b/ä.jpg"
    assert event.get_extension("bucket") == "uploads"
    assert event.get_extension("key") == "a b/ä.jpg"
    assert event.get_time().isoformat() == "2026-11-27T08:11:17.719000+00:00"
    assert event_data(event) == first
    assert events[1].get_extension("key") == "c.png"


async def test_a_redelivered_notification_produces_the_same_event_ids(
    webhook: Served, sink: Sink
) -> None:
    body = notification(s3_record("uploads", "cat.jpg"))

    await post(webhook, body)
    await post(webhook, body)

    first, again = delivered(sink)
    assert first.get_id() == again.get_id()


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer nope"},
        {"authorization": TOKEN},
        {"authorization": f"Basic {TOKEN}"},
    ],
    ids=["missing", "wrong", "no-scheme", "basic"],
)
async def test_without_the_token_nothing_is_published(
    webhook: Served, sink: Sink, headers: dict[str, str]
) -> None:
    response = await post(webhook, notification(s3_record("uploads", "cat.jpg")), headers)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert TOKEN not in response.text
    assert sink.requests == []


@pytest.mark.parametrize(
    "script",
    [[503, 503], ["drop", "drop"], [400]],
    ids=["broker-5xx", "connection-dropped", "broker-refused"],
)
async def test_a_5xx_tells_minio_to_keep_the_notification(
    webhook: Served, sink: Sink, script: list[int | str]
) -> None:
    sink.script = list(script)

    response = await post(webhook, notification(s3_record("uploads", "cat.jpg")))

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "emit_failed"


async def test_a_broker_that_recovers_within_the_retries_gets_the_event(
    webhook: Served, sink: Sink
) -> None:
    sink.script = [503]

    response = await post(webhook, notification(s3_record("uploads", "cat.jpg")))

    assert response.status_code == 200
    assert len(sink.requests) == 2


async def test_minios_reachability_probes_and_test_requests_are_answered(
    webhook: Served, sink: Sink
) -> None:
    head = await webhook.client.head("/minio/webhook")
    get = await webhook.client.get("/minio/webhook")
    empty = await post(webhook, {"EventName": "s3:TestEvent"})

    assert (head.status_code, get.status_code, empty.status_code) == (200, 200, 200)
    assert empty.json() == {"accepted": 0, "ids": []}
    assert sink.requests == []


async def test_malformed_and_oversized_bodies_get_a_precise_4xx(
    webhook: Served, sink: Sink
) -> None:
    broken = await post(webhook, b"{not json")
    huge = await post(webhook, b"[" + b" " * (2 << 20) + b"]")
    form = await webhook.client.post(
        "/minio/webhook", content=b"a=b", headers={**AUTH, "content-type": "text/plain"}
    )

    assert (broken.status_code, broken.json()["error"]["code"]) == (400, "bad_notification")
    assert (huge.status_code, huge.json()["error"]["code"]) == (413, "payload_too_large")
    assert (form.status_code, form.json()["error"]["code"]) == (415, "unsupported_media_type")
    assert sink.requests == []


def test_a_placeholder_token_is_refused_outside_dev() -> None:
    with pytest.raises(ValidationError, match="WEBHOOK_AUTH_TOKEN"):
        Settings(environment="production", webhook_auth_token=SecretStr("changeme"))

    assert Settings(
        environment="production", webhook_auth_token=SecretStr("a-real-one")
    ).environment
