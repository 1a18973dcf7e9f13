"""The outbox relay on the real MongoDB-protocol server: send, pop, keep while the broker is
down, sweep what a previous process left behind; staged events of inserts."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fnkit import CloudEvent, EmitError
from fnkit.events import new_event
from fnkit.outbox import FIELD, OutboxRelay, entry
from pymongo.errors import DuplicateKeyError

pytestmark = pytest.mark.integration


class Broker:
    """Takes events while up, refuses them (as fnkit's emitter reports it) while down."""

    def __init__(self) -> None:
        self.up = True
        self.events: list[CloudEvent] = []

    async def emit(self, event: CloudEvent) -> None:
        if not self.up:
            raise EmitError("broker down")
        self.events.append(event)


def _event(n: int) -> CloudEvent:
    return new_event("io.knative-playbook.test.thing.v1", "/tests", {"n": n}, id=f"e{n}")


async def _insert(collection: Any, doc_id: str, *numbers: int, age: float = 0) -> list[Any]:
    at = datetime.now(UTC) - timedelta(seconds=age)
    pending = [entry(_event(n), at) for n in numbers]
    await collection.insert_one({"_id": doc_id, FIELD: pending})
    return pending


async def test_events_are_sent_in_order_and_popped(mongo_db: Any) -> None:
    broker = Broker()
    relay = OutboxRelay(mongo_db["things"], broker.emit, grace_seconds=0, interval_seconds=60)
    pending = await _insert(mongo_db["things"], "a", 1, 2)

    relay.send_soon("a", pending)
    await relay.flush()

    assert [e.get_id() for e in broker.events] == ["e1", "e2"]
    assert (await mongo_db["things"].find_one({"_id": "a"}))[FIELD] == []


async def test_a_refused_event_stays_and_the_sweep_sends_it_later(mongo_db: Any) -> None:
    broker = Broker()
    broker.up = False
    relay = OutboxRelay(mongo_db["things"], broker.emit, grace_seconds=0, interval_seconds=60)
    pending = await _insert(mongo_db["things"], "a", 1)

    relay.send_soon("a", pending)
    await relay.flush()
    assert len((await mongo_db["things"].find_one({"_id": "a"}))[FIELD]) == 1
    assert await relay.sweep() is False

    broker.up = True
    assert await relay.sweep() is True
    assert [e.get_id() for e in broker.events] == ["e1"]
    assert (await mongo_db["things"].find_one({"_id": "a"}))[FIELD] == []


async def test_the_sweep_leaves_young_events_to_the_writer(mongo_db: Any) -> None:
    broker = Broker()
    relay = OutboxRelay(mongo_db["things"], broker.emit, grace_seconds=30, interval_seconds=60)
    await _insert(mongo_db["things"], "young", 1)
    await _insert(mongo_db["things"], "old", 2, age=60)

    assert await relay.sweep() is True

    assert [e.get_id() for e in broker.events] == ["e2"]


async def test_start_sweeps_at_once_for_a_previous_process(mongo_db: Any) -> None:
    broker = Broker()
    relay = OutboxRelay(mongo_db["things"], broker.emit, grace_seconds=0, interval_seconds=60)
    await relay.create_indexes()
    await _insert(mongo_db["things"], "left-behind", 7)

    relay.start()
    try:
        for _ in range(100):
            if broker.events:
                break
            await asyncio.sleep(0.05)
    finally:
        await relay.close()

    assert [e.get_id() for e in broker.events] == ["e7"]


def _staging(collection: Any, broker: Broker) -> OutboxRelay:
    return OutboxRelay(collection, broker.emit, grace_seconds=0, interval_seconds=60, staging=True)


async def test_a_staged_event_is_sent_then_deleted_and_goes_before_the_array(
    mongo_db: Any,
) -> None:
    broker = Broker()
    relay = _staging(mongo_db["things"], broker)
    staged = await relay.stage("a", _event(1), datetime.now(UTC))
    pending = await _insert(mongo_db["things"], "a", 2)  # as if changed before it was sent

    relay.send_soon("a", pending)
    await relay.flush()

    assert [e.get_id() for e in broker.events] == ["e1", "e2"]
    assert staged["_id"] == "e1"
    assert await relay.staged.count_documents({}) == 0
    assert (await mongo_db["things"].find_one({"_id": "a"}))[FIELD] == []


async def test_a_staged_event_whose_insert_landed_is_sent_by_a_later_sweep(
    mongo_db: Any,
) -> None:
    # The process died after the insert, before the send.
    broker = Broker()
    relay = _staging(mongo_db["things"], broker)
    await relay.stage("a", _event(1), datetime.now(UTC))
    await mongo_db["things"].insert_one({"_id": "a", FIELD: []})

    assert await relay.sweep() is True
    await relay.flush()

    assert [e.get_id() for e in broker.events] == ["e1"]
    assert await relay.staged.count_documents({}) == 0
    assert await relay.sweep() is True
    assert len(broker.events) == 1


async def test_a_staged_event_whose_insert_never_landed_is_dropped_and_the_insert_fenced(
    mongo_db: Any,
) -> None:
    broker = Broker()
    relay = _staging(mongo_db["things"], broker)
    await relay.stage("a", _event(1), datetime.now(UTC))

    assert await relay.sweep() is True

    assert broker.events == []
    assert await relay.staged.count_documents({}) == 0
    assert await mongo_db["things"].find_one({"_id": "a"}) == {"_id": "a"}
    with pytest.raises(DuplicateKeyError):  # the late insert is refused: never acknowledged
        await mongo_db["things"].insert_one({"_id": "a", FIELD: []})
