"""cleanup's MongoDB side on the real server: what concurrency it has to survive."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from cleanup import records

pytestmark = pytest.mark.integration


async def test_runs_saving_the_first_sweep_position_at_once_do_not_fail(mongo_db: Any) -> None:
    state = mongo_db["cleanup_state"]
    now = datetime.now(UTC)

    for attempt in range(5):
        sweep = f"orphans:{attempt}"
        # Every writer finds no document and inserts: all but one collide on _id.
        await asyncio.gather(
            *(records.save_sweep_position(state, sweep, f"key-{n}", now) for n in range(8))
        )

        assert await records.sweep_position(state, sweep) in {f"key-{n}" for n in range(8)}
    assert await state.count_documents({}) == 5


async def test_a_record_that_stopped_being_expired_is_not_deleted(mongo_db: Any) -> None:
    images = mongo_db["images"]
    now = datetime.now(UTC)
    expired = records.expired_filter("uploads", now, None)
    await images.insert_many(
        [
            {"_id": 1, "bucket": "uploads", "expires_at": now},
            {"_id": 2, "bucket": "uploads", "expires_at": now.replace(year=now.year + 1)},
            {"_id": 3, "bucket": "elsewhere", "expires_at": now},
        ]
    )

    deleted = await records.delete_expired(images, [1, 2, 3], expired)

    assert deleted == 1
    assert sorted(d["_id"] for d in await images.find({}).to_list()) == [2, 3]
