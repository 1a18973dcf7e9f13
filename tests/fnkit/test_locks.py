"""Locks: per key in a process, and across processes on the real MongoDB-protocol server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fnkit import Unavailable
from fnkit.errors import error_response
from fnkit.locks import KeyedLock, LeaseLock, LockBusy

pytestmark = pytest.mark.integration


async def _read_modify_write(collection: Any, pause: float) -> None:
    """A lost-update-prone increment: read, wait, write back (what FerretDB's $inc does)."""
    doc = await collection.find_one({"_id": "counter"})
    await asyncio.sleep(pause)
    await collection.replace_one({"_id": "counter"}, {"n": doc["n"] + 1})


async def test_unlocked_read_modify_writes_lose_updates(mongo_db: Any) -> None:
    """The control: without a lock the workload below does lose updates."""
    await mongo_db["state"].insert_one({"_id": "counter", "n": 0})

    await asyncio.gather(*(_read_modify_write(mongo_db["state"], 0.01) for _ in range(10)))

    assert (await mongo_db["state"].find_one({"_id": "counter"}))["n"] < 10


async def test_lease_locks_of_separate_processes_exclude_each_other(mongo_db: Any) -> None:
    await mongo_db["state"].insert_one({"_id": "counter", "n": 0})
    # One LeaseLock per simulated process: they share nothing but the database.
    locks = [LeaseLock(mongo_db["locks"], lease_seconds=10, wait_seconds=30) for _ in range(20)]

    async def increment(lock: LeaseLock) -> None:
        async with lock.hold("counter"):
            await _read_modify_write(mongo_db["state"], 0.01)

    await asyncio.gather(*(increment(lock) for lock in locks))

    assert (await mongo_db["state"].find_one({"_id": "counter"}))["n"] == 20
    assert await mongo_db["locks"].count_documents({}) == 0  # every lock released


async def test_a_crashed_holders_lock_is_taken_over_once_its_lease_ran_out(
    mongo_db: Any,
) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    await mongo_db["locks"].insert_one(
        {"_id": "sku-1", "owner": "crashed", "holder": "gone:1", "lease_until": past}
    )
    lock = LeaseLock(mongo_db["locks"], lease_seconds=5, wait_seconds=5)

    async with lock.hold("sku-1") as lease:
        held = await mongo_db["locks"].find_one({"_id": "sku-1"})
        assert held["owner"] == lease.owner != "crashed"
        assert lease.remaining() > 4

    assert await mongo_db["locks"].count_documents({}) == 0  # takeover guard removed too


async def test_many_contenders_take_a_stale_lock_over_and_still_exclude_each_other(
    mongo_db: Any,
) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    await mongo_db["locks"].insert_one({"_id": "counter", "owner": "crashed", "lease_until": past})
    await mongo_db["state"].insert_one({"_id": "counter", "n": 0})
    locks = [LeaseLock(mongo_db["locks"], lease_seconds=10, wait_seconds=30) for _ in range(10)]

    async def increment(lock: LeaseLock) -> None:
        async with lock.hold("counter"):
            await _read_modify_write(mongo_db["state"], 0.01)

    await asyncio.gather(*(increment(lock) for lock in locks))

    assert (await mongo_db["state"].find_one({"_id": "counter"}))["n"] == 10


async def test_a_live_holder_makes_others_give_up_with_a_503(mongo_db: Any) -> None:
    holder = LeaseLock(mongo_db["locks"], lease_seconds=30)
    waiter = LeaseLock(mongo_db["locks"], wait_seconds=0.3)

    async with holder.hold("sku-2"):
        with pytest.raises(LockBusy) as caught:
            async with waiter.hold("sku-2"):
                pytest.fail("the second holder got in")

    assert error_response(caught.value).status == 503
    assert "sku-2" in caught.value.message
    async with waiter.hold("sku-2"):  # free again once released
        pass


async def test_a_lease_too_short_for_the_work_refuses_to_go_on(mongo_db: Any) -> None:
    # Generous figures: taking the lock may be slow on a loaded machine, and only the time
    # left on the lease matters here, not how fast anything ran.
    lock = LeaseLock(mongo_db["locks"], lease_seconds=4.0)

    async with lock.hold("sku-3") as lease:
        lease.ensure(1.0)
        await asyncio.sleep(max(0.0, lease.remaining() - 0.5))
        with pytest.raises(Unavailable):  # a 503: retried later, never written outside the lock
            lease.ensure(1.0)


async def test_keyed_lock_serialises_one_key_and_not_others() -> None:
    locks = KeyedLock()
    order: list[str] = []

    async def hold(key: str, name: str) -> None:
        async with locks(key):
            order.append(f"{name} in")
            await asyncio.sleep(0.02)
            order.append(f"{name} out")

    await asyncio.gather(hold("a", "first"), hold("a", "second"), hold("b", "other"))

    assert order.index("first out") < order.index("second in")
    assert order.index("other in") < order.index("first out")
    assert len(locks) == 0
