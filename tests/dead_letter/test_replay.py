"""Replaying dead letters: the original event, byte for byte, and a record of every attempt."""

from __future__ import annotations

import base64

import pytest

from tests.dead_letter.helpers import (
    Broker,
    Served,
    binary_dead_letter,
    closed_port_url,
    knative_error,
    serve,
    settings_for,
    structured_dead_letter,
)

pytestmark = pytest.mark.integration


def _replays(metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], outcome: str) -> float:
    return metrics.get(("dead_letter_replays_total", frozenset({("outcome", outcome)})), 0.0)


async def test_replay_sends_the_original_event_byte_for_byte(
    service: Served, broker: Broker
) -> None:
    body = b'{ "sku": "A-1",  "price" : 1.50 }'
    headers, _ = message = binary_dead_letter(
        body,
        time="2025-05-24T10:00:00.123456789Z",
        tenant="caf%C3%A9%20bar",
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )
    letter_id = await service.stored(message)
    delivered_before = _replays(await service.metrics(), "delivered")

    response = await service.client.post(f"/dead-letters/{letter_id}/replay")

    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "delivered"
    assert response.json()["status"] == 202
    [sent] = broker.requests
    assert sent.body == body
    expected = {
        name: value for name, value in headers.items() if not name.startswith("ce-knativeerror")
    }
    assert {name: sent.headers[name] for name in expected} == {
        **expected,
        "ce-tenant": "caf%C3%A9%20bar",
    }
    assert not [name for name in sent.headers if name.startswith("ce-knativeerror")]
    letter = (await service.client.get(f"/dead-letters/{letter_id}")).json()
    assert [(r["outcome"], r["status"], r["target"]) for r in letter["replays"]] == [
        ("delivered", 202, broker.url)
    ]
    assert letter["replay_count"] == 1 and letter["last_replay"]["outcome"] == "delivered"
    assert _replays(await service.metrics(), "delivered") == delivered_before + 1


async def test_replay_of_structured_binary_data_sends_its_exact_bytes(
    service: Served, broker: Broker
) -> None:
    image = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    message = structured_dead_letter(
        datacontenttype="image/png", data_base64=base64.b64encode(image).decode(), subject="x.png"
    )
    letter_id = await service.stored(message)

    response = await service.client.post(f"/dead-letters/{letter_id}/replay")

    assert response.status_code == 200
    [sent] = broker.requests
    assert sent.body == image
    assert sent.headers["content-type"] == "image/png"
    assert sent.headers["ce-subject"] == "x.png"
    assert "ce-time" not in sent.headers  # the original had none; none is invented


async def test_replay_when_the_broker_is_down_is_503_and_recorded(
    mongo_env: dict[str, str], broker: Broker
) -> None:
    async with serve(settings_for(mongo_env, k_sink=closed_port_url())) as service:
        letter_id = await service.stored(binary_dead_letter(b'{"n": 1}'))
        unreachable_before = _replays(await service.metrics(), "unreachable")

        response = await service.client.post(f"/dead-letters/{letter_id}/replay")

        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "replay_target_unavailable"
        assert "the dead letter is kept" in error["message"]
        assert error["details"]["outcome"] == "unreachable"
        letter = (await service.client.get(f"/dead-letters/{letter_id}")).json()
        assert [r["outcome"] for r in letter["replays"]] == ["unreachable"]
        assert letter["replays"][0]["status"] is None
        assert letter["event"]["data"] == {"n": 1}
        assert _replays(await service.metrics(), "unreachable") == unreachable_before + 1

        # The broker is back (here: an explicit target): the same dead letter goes through.
        again = await service.client.post(
            f"/dead-letters/{letter_id}/replay", json={"target": broker.url}
        )

        assert again.status_code == 200
        assert [r.body for r in broker.requests] == [b'{"n": 1}']
        letter = (await service.client.get(f"/dead-letters/{letter_id}")).json()
        assert [r["outcome"] for r in letter["replays"]] == ["unreachable", "delivered"]


async def test_replay_refused_by_the_target_is_502_and_recorded(
    service: Served, broker: Broker
) -> None:
    letter_id = await service.stored(binary_dead_letter(b"{}"))
    broker.status = 400

    response = await service.client.post(f"/dead-letters/{letter_id}/replay")

    assert response.status_code == 502
    assert "broker says no" in response.json()["error"]["message"]
    letter = (await service.client.get(f"/dead-letters/{letter_id}")).json()
    assert [(r["outcome"], r["status"]) for r in letter["replays"]] == [("rejected", 400)]


async def test_replay_to_the_original_destination(service: Served, broker: Broker) -> None:
    letter_id = await service.stored(
        binary_dead_letter(b'{"to": "subscriber"}', error=knative_error(destination=broker.url))
    )

    response = await service.client.post(
        f"/dead-letters/{letter_id}/replay", json={"target": "destination"}
    )

    assert response.status_code == 200
    assert response.json()["target"] == broker.url
    assert [r.body for r in broker.requests] == [b'{"to": "subscriber"}']


async def test_replay_targets_that_cannot_work_are_4xx(service: Served, broker: Broker) -> None:
    no_destination = await service.stored(binary_dead_letter(b"{}", error={}))

    bad_scheme = await service.client.post(
        f"/dead-letters/{no_destination}/replay", json={"target": "file:///etc/passwd"}
    )
    missing = await service.client.post(
        f"/dead-letters/{no_destination}/replay", json={"target": "destination"}
    )
    unknown_field = await service.client.post(
        f"/dead-letters/{no_destination}/replay", json={"url": broker.url}
    )
    absent = await service.client.post("/dead-letters/0123456789abcdef01234567/replay")

    assert (bad_scheme.status_code, missing.status_code) == (422, 422)
    assert unknown_field.status_code == 422
    assert absent.status_code == 404
    assert broker.requests == []
    letter = (await service.client.get(f"/dead-letters/{no_destination}")).json()
    assert letter["replays"] == []
