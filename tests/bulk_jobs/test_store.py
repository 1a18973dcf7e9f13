"""The jobs' store on the real MongoDB-protocol server: results once, exact counts."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from bulk_jobs.store import (
    COMPLETIONS,
    JOB_COMPLETED,
    RESULTS,
    ItemResult,
    JobStore,
    Status,
    new_job_id,
    result_id,
)
from fnkit import CloudEvent, new_event
from fnkit.outbox import OutboxRelay

pytestmark = pytest.mark.integration


class Emitted:
    """Stands in for the broker behind the relay: keeps what was emitted."""

    def __init__(self) -> None:
        self.events: list[CloudEvent] = []

    async def __call__(self, event: CloudEvent) -> None:
        self.events.append(event)


def make_store(db: Any, emitted: Emitted, compact_every: int = 50) -> JobStore:
    relay = OutboxRelay(db[COMPLETIONS], emitted, grace_seconds=0, interval_seconds=3600)

    def event(type: str, data: Any = None, *, subject: str | None = None, **ext: Any) -> CloudEvent:
        return new_event(type, "/tests/bulk-jobs", data, subject=subject, **ext)

    return JobStore(db, event, relay, compact_every=compact_every)


@pytest.fixture
async def emitted() -> Emitted:
    return Emitted()


@pytest.fixture
async def store(mongo_db: Any, emitted: Emitted) -> JobStore:
    created = make_store(mongo_db, emitted)
    await created.create_indexes()
    return created


async def new_job(store: JobStore, total: int | None) -> str:
    job_id = new_job_id()
    await store.create(job_id, {"kind": "inline"}, total=total, items=b"[]")
    return job_id


def ok(job_id: str, index: int) -> ItemResult:
    return ItemResult(job_id, index, succeeded=True, detail={"sku": f"S{index}"})


def bad(job_id: str, index: int, reason: str = "price: too fine") -> ItemResult:
    return ItemResult(job_id, index, succeeded=False, reason=reason)


async def test_a_result_is_new_once_and_counted_once(store: JobStore) -> None:
    job_id = await new_job(store, 3)

    first = await store.record([ok(job_id, 0), bad(job_id, 1)])
    again = await store.record([ok(job_id, 0), ok(job_id, 1), ok(job_id, 2)])

    assert first == [True, True]
    assert again == [False, False, True]
    counts = await store.counts(job_id)
    assert (counts.succeeded, counts.failed) == (2, 1)


async def test_the_first_result_of_an_item_wins_even_in_one_write(store: JobStore) -> None:
    job_id = await new_job(store, 1)

    outcomes = await store.record([bad(job_id, 0, "first"), ok(job_id, 0)])

    assert outcomes == [True, False]
    [doc] = await store.results.find({"job_id": job_id}).to_list()
    assert doc["outcome"] == "failed" and doc["reason"] == "first"


async def test_counts_stay_exact_when_many_writers_race_over_the_same_results(
    mongo_db: Any, emitted: Emitted
) -> None:
    # Compacting every 2 tallies: each replica also folds its own tallies as it goes.
    stores = [make_store(mongo_db, emitted, compact_every=2) for _ in range(6)]
    await stores[0].create_indexes()
    job_id = await new_job(stores[0], 300)
    results = [ok(job_id, i) if i % 10 else bad(job_id, i) for i in range(300)]

    # Six "replicas", each recording every result (in batches of 50): five of six are duplicates.
    await asyncio.gather(
        *(
            store.record(results[start : start + 50])
            for store in stores
            for start in range(0, 300, 50)
        )
    )

    counts = await stores[0].counts(job_id)
    assert (counts.succeeded, counts.failed) == (270, 30)
    assert await mongo_db[RESULTS].count_documents({"job_id": job_id}) == 300


async def test_a_job_is_not_complete_before_every_item_has_a_result(store: JobStore) -> None:
    job_id = await new_job(store, 3)
    await store.record([ok(job_id, 0), ok(job_id, 1)])

    assert await store.complete_if_done(job_id) is False
    progress = await store.progress(job_id)
    assert progress is not None and progress.status is Status.RUNNING


async def test_a_job_whose_total_is_unknown_does_not_complete(store: JobStore) -> None:
    job_id = await new_job(store, None)
    await store.record([ok(job_id, 0)])

    assert await store.complete_if_done(job_id) is False
    await store.set_total(job_id, 1)
    assert await store.complete_if_done(job_id) is True


async def test_racing_completion_checks_complete_the_job_once_and_emit_once(
    mongo_db: Any, emitted: Emitted
) -> None:
    stores = [make_store(mongo_db, emitted) for _ in range(8)]
    await stores[0].create_indexes()
    job_id = await new_job(stores[0], 4)
    await stores[0].record([ok(job_id, 0), ok(job_id, 1), bad(job_id, 2), ok(job_id, 3)])

    winners = await asyncio.gather(*(s.complete_if_done(job_id) for s in stores))
    for s in stores:
        await s.relay.flush()

    assert winners.count(True) == 1
    [event] = emitted.events
    assert event.get_type() == JOB_COMPLETED
    assert event.get_id() == f"{job_id}:completed"
    data = event.get_data()
    assert isinstance(data, dict)
    assert (data["total"], data["succeeded"], data["failed"]) == (4, 3, 1)
    progress = await stores[0].progress(job_id)
    assert progress is not None and progress.status is Status.COMPLETED
    job = await stores[0].get(job_id)
    assert job is not None
    assert (job["status"], job["succeeded"], job["failed"]) == ("COMPLETED", 3, 1)
    # Sent: nothing is left in the outbox for a sweep to send again.
    marker = await mongo_db[COMPLETIONS].find_one({"_id": job_id})
    assert marker["outbox"] == []


async def test_a_completed_job_keeps_its_counts_and_late_duplicates_change_nothing(
    store: JobStore, emitted: Emitted
) -> None:
    job_id = await new_job(store, 2)
    await store.record([ok(job_id, 0), bad(job_id, 1)])
    assert await store.complete_if_done(job_id)

    assert await store.record([ok(job_id, 1)]) == [False]
    assert await store.complete_if_done(job_id) is False
    progress = await store.progress(job_id)
    assert progress is not None
    assert (progress.counts.succeeded, progress.counts.failed) == (1, 1)


async def test_an_empty_job_completes_with_zero_counts(store: JobStore, emitted: Emitted) -> None:
    job_id = await new_job(store, 0)

    assert await store.complete_if_done(job_id) is True
    await store.relay.flush()
    [event] = emitted.events
    data = event.get_data()
    assert isinstance(data, dict)
    assert (data["total"], data["succeeded"], data["failed"]) == (0, 0, 0)


async def test_results_a_crash_left_without_a_tally_are_counted_by_repair(
    store: JobStore, mongo_db: Any
) -> None:
    job_id = await new_job(store, 4)
    await store.record([ok(job_id, 0), ok(job_id, 1)])
    # What a crash between a write's results and its tallies leaves: results, no tally.
    old = (await mongo_db[RESULTS].find_one({"_id": result_id(job_id, 0)}))["at"]
    await mongo_db[RESULTS].insert_many(
        [
            {
                "_id": result_id(job_id, 2),
                "job_id": job_id,
                "index": 2,
                "outcome": "failed",
                "reason": "x",
                "batch": "crashed",
                "at": old,
            },
            {
                "_id": result_id(job_id, 3),
                "job_id": job_id,
                "index": 3,
                "outcome": "succeeded",
                "batch": "crashed",
                "at": old,
            },
        ]
    )
    # Their redeliveries are duplicates: without repair the job would wait for ever.
    assert await store.record([ok(job_id, 2), ok(job_id, 3)]) == [False, False]
    assert await store.complete_if_done(job_id) is False

    assert await store.repair(job_id, timedelta(0)) == 1
    assert await store.repair(job_id, timedelta(0)) == 0

    counts = await store.counts(job_id)
    assert (counts.succeeded, counts.failed) == (3, 1)
    assert await store.complete_if_done(job_id) is True


async def test_repair_leaves_recent_writes_to_their_own_tallies(store: JobStore) -> None:
    job_id = await new_job(store, 1)
    await store.record([ok(job_id, 0)])

    assert await store.repair(job_id, timedelta(minutes=5)) == 0
    assert (await store.counts(job_id)).recorded == 1


async def test_results_come_in_pages_in_item_order_and_filtered_by_outcome(
    store: JobStore,
) -> None:
    job_id = await new_job(store, 25)
    other = await new_job(store, 1)
    await store.record(
        [bad(job_id, i, f"bad {i}") if i % 4 == 0 else ok(job_id, i) for i in reversed(range(25))]
    )
    await store.record([ok(other, 0)])

    seen: list[int] = []
    after = None
    while True:
        docs, after = await store.results_page(job_id, after=after, limit=10, outcome=None)
        seen += [doc["index"] for doc in docs]
        if after is None:
            break
    failed, more = await store.results_page(job_id, after=None, limit=100, outcome="failed")

    assert seen == list(range(25))
    assert [(d["index"], d["reason"]) for d in failed] == [(i, f"bad {i}") for i in range(0, 25, 4)]
    assert more is None


async def test_a_writer_folds_its_tallies_into_summaries_and_counts_stay_exact(
    mongo_db: Any, emitted: Emitted
) -> None:
    store = make_store(mongo_db, emitted, compact_every=4)
    await store.create_indexes()
    job_id = await new_job(store, 30)

    for index in range(30):
        await store.record([ok(job_id, index) if index % 3 else bad(job_id, index)])

    docs = await store.tallies.find({"job_id": job_id}).to_list()
    assert len(docs) == 7 + 2  # 7 summaries of 4 tallies, 2 tallies not folded yet
    counts = await store.counts(job_id)
    assert (counts.succeeded, counts.failed) == (20, 10)
    assert await store.repair(job_id, timedelta(0)) == 0  # folded tallies still count as tallied
    assert await store.complete_if_done(job_id) is True


async def test_tallies_a_summary_covers_are_not_counted_twice(store: JobStore) -> None:
    job_id = await new_job(store, 3)
    await store.record([ok(job_id, 0)])
    await store.record([ok(job_id, 1), bad(job_id, 2)])
    raw = await store.tallies.find({"job_id": job_id}).to_list()
    # A writer that crashed after writing its summary, before deleting what it covers.
    await store.tallies.insert_one(
        {
            "_id": f"{job_id}:summary:x",
            "job_id": job_id,
            "succeeded": 2,
            "failed": 1,
            "at": raw[0]["at"],
            "covers": [doc["_id"] for doc in raw],
        }
    )

    counts = await store.counts(job_id)

    assert (counts.succeeded, counts.failed) == (2, 1)
