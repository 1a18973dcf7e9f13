"""Storing dead letters as Knative delivers them: both modes, exact originals, once each."""

from __future__ import annotations

import asyncio
import base64
import uuid

import orjson
import pytest

from tests.dead_letter.helpers import (
    FAILED_AT,
    Served,
    binary_dead_letter,
    knative_error,
    structured_dead_letter,
)

pytestmark = pytest.mark.integration


def unique_type() -> str:
    return f"io.knative-playbook.test{uuid.uuid4().hex[:8]}.created.v1"


async def test_binary_dead_letter_is_stored_with_its_exact_event_and_decoded_error(
    service: Served,
) -> None:
    body = b'{ "sku" :  "A-1",\n  "price": 1.50 }'  # spacing a re-serialisation would lose
    message = binary_dead_letter(
        body,
        error=knative_error(code=422, body=b'{"error": "price must be an integer"}'),
        time="2025-05-24T10:00:00.123456789Z",  # nanoseconds: the SDK would keep microseconds
        subject="products/A-1",
        tenant="caf%C3%A9%20bar",  # percent-encoded extension value, per the HTTP binding
    )

    letter_id = await service.stored(message)
    letter = (await service.client.get(f"/dead-letters/{letter_id}")).json()

    headers, _ = message
    assert letter["event"]["attributes"] == {
        "specversion": "1.0",
        "id": headers["ce-id"],
        "source": headers["ce-source"],
        "type": headers["ce-type"],
        "time": "2025-05-24T10:00:00.123456789Z",
        "subject": "products/A-1",
        "tenant": "café bar",
        "datacontenttype": "application/json",
    }
    assert base64.b64decode(letter["event"]["data_base64"]) == body
    assert letter["event"]["data"] == {"sku": "A-1", "price": 1.5}
    assert letter["error"] == {
        "destination": FAILED_AT,
        "code": 422,
        "data_base64": base64.b64encode(b'{"error": "price must be an integer"}').decode(),
        "body": '{"error": "price must be an integer"}',
        "truncated": False,
    }
    assert (letter["type"], letter["source"], letter["event_id"]) == (
        headers["ce-type"],
        headers["ce-source"],
        headers["ce-id"],
    )
    assert (letter["destination"], letter["code"], letter["deliveries"]) == (FAILED_AT, 422, 1)
    assert letter["subject"] == "products/A-1"
    assert letter["replays"] == [] and letter["fanin"] is None


async def test_binary_data_that_is_not_json_is_kept_byte_for_byte(service: Served) -> None:
    body = bytes(range(256)) * 4
    letter_id = await service.stored(
        binary_dead_letter(body, content_type="application/octet-stream")
    )

    letter = (await service.client.get(f"/dead-letters/{letter_id}")).json()

    assert base64.b64decode(letter["event"]["data_base64"]) == body
    assert letter["event"]["data"] is None  # not text, so nothing to show but the bytes
    assert letter["event"]["attributes"]["datacontenttype"] == "application/octet-stream"


async def test_structured_dead_letter_keeps_its_attributes_as_sent(service: Served) -> None:
    message = structured_dead_letter(
        error={"knativeerrordest": FAILED_AT, "knativeerrorcode": 500, "knativeerrordata": ""},
        datacontenttype="application/json",
        data={"job_id": "j-1", "nested": {"list": [1, 2, 3]}},
        priority=7,
        urgent=True,
    )

    letter_id = await service.stored(message)
    letter = (await service.client.get(f"/dead-letters/{letter_id}")).json()

    envelope = orjson.loads(message[1])
    # No `time` was sent and none is invented; integer and boolean extensions keep their type.
    assert letter["event"]["attributes"] == {
        "specversion": "1.0",
        "id": envelope["id"],
        "source": envelope["source"],
        "type": envelope["type"],
        "datacontenttype": "application/json",
        "priority": 7,
        "urgent": True,
    }
    assert orjson.loads(base64.b64decode(letter["event"]["data_base64"])) == envelope["data"]
    assert letter["event"]["data"] == envelope["data"]
    assert letter["error"]["code"] == 500
    assert letter["error"]["body"] is None


async def test_structured_data_base64_is_kept_byte_for_byte(service: Served) -> None:
    image = b"\x89PNG\r\n\x1a\n" + bytes(range(200))
    letter_id = await service.stored(
        structured_dead_letter(
            datacontenttype="image/png", data_base64=base64.b64encode(image).decode()
        )
    )

    letter = (await service.client.get(f"/dead-letters/{letter_id}")).json()

    assert base64.b64decode(letter["event"]["data_base64"]) == image
    assert "data_base64" not in letter["event"]["attributes"]


async def test_redelivered_dead_letter_is_stored_once(service: Served) -> None:
    event_type = unique_type()
    message = binary_dead_letter(b'{"n": 1}', type=event_type)

    first = await service.post(message)
    again = await service.post(message)
    letter_id = await service.id_of(message[0]["ce-id"])
    letter = (await service.client.get(f"/dead-letters/{letter_id}")).json()
    metrics = await service.metrics()

    assert (first.status_code, again.status_code) == (204, 204)
    assert letter["deliveries"] == 2
    assert metrics[("dead_letter_stored_total", frozenset({("type", event_type)}))] == 1


async def test_concurrent_duplicate_deliveries_are_stored_once(service: Served) -> None:
    message = binary_dead_letter(b'{"n": 2}')

    responses = await asyncio.gather(*(service.post(message) for _ in range(8)))
    page = (await service.client.get("/dead-letters")).json()

    assert [r.status_code for r in responses] == [204] * 8
    # One document: the unique index decides. (`deliveries` is not asserted: FerretDB can lose
    # concurrent $inc updates of one document; see dead_letter.store.)
    assert len(page["items"]) == 1


async def test_same_event_failing_at_two_destinations_is_two_dead_letters(
    service: Served,
) -> None:
    event_id = uuid.uuid4().hex
    for destination in ("http://a.example/", "http://b.example/"):
        response = await service.post(
            binary_dead_letter(b"{}", id=event_id, error=knative_error(destination=destination))
        )
        assert response.status_code == 204

    page = (await service.client.get("/dead-letters")).json()

    assert sorted(item["destination"] for item in page["items"]) == [
        "http://a.example/",
        "http://b.example/",
    ]


async def test_error_data_as_older_knative_sent_it_and_when_cut(service: Served) -> None:
    legacy = await service.stored(
        binary_dead_letter(
            b"{}",
            error={
                "knativeerrordest": FAILED_AT,
                "knativeerrorcode": "500",
                "knativeerrordata": "<html>not base64</html>",
            },
        )
    )
    long_body = b"x" * 5000
    cut = await service.stored(binary_dead_letter(b"{}", error=knative_error(body=long_body)))
    bare = await service.stored(binary_dead_letter(b"{}", error={}))

    legacy_error = (await service.client.get(f"/dead-letters/{legacy}")).json()["error"]
    cut_error = (await service.client.get(f"/dead-letters/{cut}")).json()["error"]
    bare_letter = (await service.client.get(f"/dead-letters/{bare}")).json()

    assert legacy_error["body"] == "<html>not base64</html>"
    assert cut_error["truncated"] is True
    assert cut_error["body"] == "x" * 768  # 1024 base64 characters hold 768 bytes
    assert bare_letter["error"] == {
        "destination": None,
        "code": None,
        "data_base64": None,
        "body": None,
        "truncated": False,
    }
    assert bare_letter["destination"] is None
