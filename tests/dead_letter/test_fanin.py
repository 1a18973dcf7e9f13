"""A dead-lettered item.requested counts as a failed item: item.failed goes out, once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from tests.dead_letter.helpers import (
    ITEM_FAILED,
    ITEM_REQUESTED,
    Broker,
    Served,
    binary_dead_letter,
    eventually,
    knative_error,
    serve,
    settings_for,
)

pytestmark = pytest.mark.integration


def item_requested(data: object, **kwargs: object) -> tuple[dict[str, str], bytes]:
    return binary_dead_letter(orjson.dumps(data), type=ITEM_REQUESTED, **kwargs)  # type: ignore[arg-type]


async def _letter(service: Served, event_id: str) -> dict[str, object]:
    letter_id = await service.id_of(event_id)
    letter: dict[str, object] = (await service.client.get(f"/dead-letters/{letter_id}")).json()
    return letter


async def _fanin_state(service: Served, event_id: str, state: str) -> bool:
    return (await _letter(service, event_id))["fanin_state"] == state


async def test_item_failed_is_emitted_once_even_when_delivered_twice(
    service: Served, broker: Broker
) -> None:
    message = item_requested(
        {"job_id": "job-7", "item_id": "sku-42", "record": {"sku": "sku-42"}},
        error=knative_error(code=503),
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )

    first = await service.post(message)
    again = await service.post(message)
    # A few sweeps pass: a pending or repeated emission would show up in them.
    await asyncio.sleep(1.0)

    assert (first.status_code, again.status_code) == (204, 204)
    [emitted] = broker.accepted_of_type(ITEM_FAILED)
    letter = await _letter(service, message[0]["ce-id"])
    assert orjson.loads(emitted.body) == {
        "job_id": "job-7",
        "item_id": "sku-42",
        "reason": "dead-lettered after retries: 503",
        "dead_letter_id": letter["id"],
    }
    assert emitted.headers["ce-source"] == "/knative-playbook/dead-letter"
    # The failure stays in the trace of the item it answers for.
    assert emitted.headers["ce-traceparent"].split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
    assert letter["fanin"]["state"] == "emitted"  # type: ignore[index]
    assert letter["fanin"]["event_id"] == emitted.headers["ce-id"]  # type: ignore[index]
    assert letter["deliveries"] == 2


async def test_concurrent_duplicate_deliveries_emit_one_item_failed(
    service: Served, broker: Broker
) -> None:
    message = item_requested({"job_id": "job-8", "index": 3})

    responses = await asyncio.gather(*(service.post(message) for _ in range(6)))
    await asyncio.sleep(1.0)

    assert [r.status_code for r in responses] == [204] * 6
    [emitted] = broker.accepted_of_type(ITEM_FAILED)
    data = orjson.loads(emitted.body)
    assert (data["job_id"], data["index"]) == ("job-8", 3)
    assert "item_id" not in data


async def test_item_failed_waits_in_the_outbox_while_the_broker_refuses_it(
    service: Served, broker: Broker
) -> None:
    broker.status = 503
    message = item_requested({"job_id": "job-9", "item_id": "i-1"}, error=knative_error(code=500))

    response = await service.post(message)
    pending = await _letter(service, message[0]["ce-id"])
    broker.status = 202
    await eventually(lambda: broker.accepted_of_type(ITEM_FAILED))
    await asyncio.sleep(1.0)
    done = await _letter(service, message[0]["ce-id"])

    assert response.status_code == 204  # stored: the outbox, not the broker, now owns it
    assert pending["fanin"]["state"] == "pending"  # type: ignore[index]
    assert "503" in pending["fanin"]["last_error"]  # type: ignore[index]
    assert len(broker.accepted_of_type(ITEM_FAILED)) == 1
    assert done["fanin"]["state"] == "emitted"  # type: ignore[index]
    assert pending["fanin"]["attempts"] == 1  # type: ignore[index]


async def test_pending_item_failed_is_emitted_by_the_next_process_at_start_up(
    mongo_env: dict[str, str], broker: Broker
) -> None:
    broker.status = 503
    message = item_requested({"job_id": "job-10", "item_id": "i-2"})
    # A long sweep interval: only the start-up sweep of the second process can emit it.
    async with serve(
        settings_for(
            mongo_env, k_sink=broker.url, sweep_interval_seconds=3600, fanin_retry_seconds=0.01
        )
    ) as first:
        assert (await first.post(message)).status_code == 204
    assert broker.accepted_of_type(ITEM_FAILED) == []
    broker.status = 202

    async with serve(
        settings_for(mongo_env, k_sink=broker.url, sweep_interval_seconds=3600)
    ) as second:
        await eventually(lambda: broker.accepted_of_type(ITEM_FAILED))
        await eventually(lambda: _fanin_state(second, message[0]["ce-id"], "emitted"))

    assert len(broker.accepted_of_type(ITEM_FAILED)) == 1


async def test_item_requested_without_a_job_item_is_stored_but_not_answered(
    service: Served, broker: Broker
) -> None:
    message = item_requested({"index": 1})

    response = await service.post(message)
    await asyncio.sleep(0.5)
    letter = await _letter(service, message[0]["ce-id"])

    assert response.status_code == 204
    assert letter["fanin_state"] == "unmappable"
    assert "job_id" in letter["fanin"]["reason"]  # type: ignore[index]
    assert broker.requests == []


async def test_other_event_types_emit_nothing(service: Served, broker: Broker) -> None:
    response = await service.post(
        binary_dead_letter(orjson.dumps({"job_id": "j", "item_id": "i"}), id=uuid.uuid4().hex)
    )
    await asyncio.sleep(0.5)

    assert response.status_code == 204
    assert broker.requests == []


async def test_two_replicas_receiving_the_same_dead_letter_emit_one_item_failed(
    mongo_env: dict[str, str], broker: Broker
) -> None:
    broker.status = 503  # the broker is down at first: both replicas' sweeps keep trying
    message = item_requested({"job_id": "job-11", "item_id": "i-3"})
    settings = settings_for(mongo_env, k_sink=broker.url, sweep_interval_seconds=0.05)

    async with serve(settings) as one, serve(settings) as two:
        responses = await asyncio.gather(*(r.post(message) for r in (one, two, one, two)))
        await asyncio.sleep(0.5)
        broker.status = 202
        await eventually(lambda: broker.accepted_of_type(ITEM_FAILED))
        await asyncio.sleep(1.0)

    assert [r.status_code for r in responses] == [204] * 4
    assert len(broker.accepted_of_type(ITEM_FAILED)) == 1


async def test_an_attempt_whose_holder_crashed_is_made_again_after_the_lease(
    mongo_env: dict[str, str], mongo_db: Any, broker: Broker
) -> None:
    broker.status = 503
    message = item_requested({"job_id": "job-12", "item_id": "i-4"})
    # Retries an hour apart: only the lease on an attempt without outcome can bring it back.
    settings = settings_for(
        mongo_env, k_sink=broker.url, fanin_lease_seconds=0.5, fanin_retry_seconds=3600
    )

    async with serve(settings) as service:
        assert (await service.post(message)).status_code == 204
        # What a crash between sending and recording leaves: an attempt with no outcome, and
        # the dead letter's summary as it was when the attempt began.
        await mongo_db["dead_letter_fanin"].delete_many({"kind": "failed"})
        await mongo_db["dead_letters"].update_many(
            {}, {"$set": {"fanin.next_attempt_at": datetime.now(UTC), "fanin.attempts": 0}}
        )
        broker.status = 202
        await eventually(lambda: broker.accepted_of_type(ITEM_FAILED))
        await eventually(lambda: _fanin_state(service, message[0]["ce-id"], "emitted"))

    assert len(broker.accepted_of_type(ITEM_FAILED)) == 1
