"""Bulk jobs end to end: fan-out through the broker, fan-in with exact counts, one completion."""

from __future__ import annotations

import uuid

import pytest

from tests.fanout.conftest import DOOMED, ITEMS, Plane, products

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(max(300, ITEMS // 5))]

# Seconds a job of ITEMS items may take: generous, this is not a speed test (bench/ is).
WITHIN = max(240.0, ITEMS / 10)


def prefix() -> str:
    return f"P{uuid.uuid4().hex[:10]}"


async def test_a_job_with_invalid_records_completes_with_exact_counts(plane: Plane) -> None:
    sku = prefix()
    records = products(sku, ITEMS, invalid_every=20)
    invalid = {n for n in range(ITEMS) if n % 20 == 3}

    job_id = await plane.submit(records)
    job = await plane.completed(job_id, WITHIN)

    assert job["status"] == "COMPLETED"
    assert (job["total"], job["succeeded"], job["failed"]) == (
        ITEMS,
        ITEMS - len(invalid),
        len(invalid),
    )
    assert job["pending"] == 0 and job["emitted"] == ITEMS
    failed = await plane.results(job_id, "failed")
    assert {r["index"] for r in failed} == invalid
    assert all(r["reason"].startswith("price:") for r in failed)
    stored = (
        await plane.db["products"]
        .find({"sku": {"$regex": f"^{sku}-"}}, {"sku": 1, "_id": 0})
        .to_list()
    )
    assert sorted(doc["sku"] for doc in stored) == sorted(
        records[n]["sku"] for n in range(ITEMS) if n not in invalid
    )
    [completion] = await plane.completions(job_id)
    assert completion["attributes"]["id"] == f"{job_id}:completed"


async def test_duplicate_deliveries_and_passing_503s_leave_the_counts_exact(plane: Plane) -> None:
    sku = prefix()
    records = products(sku, ITEMS, invalid_every=20)
    invalid = sum(1 for n in range(ITEMS) if n % 20 == 3)
    plane.restart("item-processor", FAULT_FIRST_ATTEMPT_503_RATIO="0.02")
    await plane.knobs(duplicate_ratio=0.1)
    before = await plane.metrics()
    try:
        job_id = await plane.submit(records)
        job = await plane.completed(job_id, WITHIN)
    finally:
        await plane.knobs(duplicate_ratio=0.0)
        plane.restart("item-processor", FAULT_FIRST_ATTEMPT_503_RATIO="0")
    after = await plane.metrics()

    def grew(metric: str, subscriber: str, detail: str) -> float:
        key = (metric, subscriber, detail)
        return after.get(key, 0.0) - before.get(key, 0.0)

    # The faults did happen: 503s from the processor, more deliveries than items.
    assert grew("devplane_delivery_attempts_total", "item-processor", "503") > 0
    assert grew("devplane_deliveries_total", "item-processor", "delivered") > ITEMS
    assert grew("devplane_deliveries_total", "job-aggregator", "delivered") > ITEMS
    assert (job["status"], job["succeeded"], job["failed"]) == (
        "COMPLETED",
        ITEMS - invalid,
        invalid,
    )
    assert await plane.db["products"].count_documents({"sku": {"$regex": f"^{sku}-"}}) == (
        ITEMS - invalid
    )
    # The job completed once: the aggregator sent job.completed once. The broker may still
    # have delivered that one event twice (duplicate_ratio covers every delivery); each copy
    # carries the same id, so a subscriber can tell.
    deliveries = await plane.completions(job_id)
    [emitted] = await plane.emissions(f"{job_id}:completed", WITHIN)
    to_subscriber = [d for d in emitted["deliveries"] if d["subscriber"] == "completions"]
    assert (
        len(deliveries)
        == len(to_subscriber)
        == 1 + sum(1 for d in to_subscriber if d.get("duplicate"))
    )
    assert {d["event_id"] for d in deliveries} == {f"{job_id}:completed"}


async def test_items_that_always_fail_are_dead_lettered_counted_as_failed_and_the_job_ends(
    plane: Plane,
) -> None:
    sku = prefix()
    records = products(sku, 60)
    doomed = {5, 17, 42}
    for n in doomed:
        records[n]["sku"] = f"{DOOMED}-{sku}-{n}"

    job_id = await plane.submit(records)
    job = await plane.completed(job_id, 120)

    assert (job["status"], job["succeeded"], job["failed"]) == ("COMPLETED", 57, 3)
    failed = await plane.results(job_id, "failed")
    assert {r["index"] for r in failed} == doomed
    assert all(r["reason"] == "dead-lettered after retries: 503" for r in failed)
    letters = (
        await plane.client.get(
            f"{plane.functions['dead-letter'].url}/dead-letters",
            params={"type": "io.knative-playbook.item.requested.v1", "limit": 500},
        )
    ).json()["items"]
    ours = [letter for letter in letters if letter["event_id"].startswith(f"{job_id}:")]
    assert sorted(letter["event_id"] for letter in ours) == sorted(f"{job_id}:{n}" for n in doomed)
    assert {letter["fanin_state"] for letter in ours} == {"emitted"}
    assert {r["detail"]["dead_letter_id"] for r in failed} == {letter["id"] for letter in ours}
    [completion] = await plane.completions(job_id)
    assert completion["attributes"]["id"] == f"{job_id}:completed"
