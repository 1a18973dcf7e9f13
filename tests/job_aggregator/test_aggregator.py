"""job-aggregator in-process on the real MongoDB-protocol server: exact counts, one completion."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from bulk_jobs.store import RESULTS, new_job_id, result_id
from devplane.servers import MongoServer
from fnkit.mongo import now
from job_aggregator.config import Settings
from job_aggregator.main import create_app

from tests.support.apps import app_starter
from tests.support.sinks import RecordingBroker
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

PROCESSED = "io.knative-playbook.item.processed.v1"
FAILED = "io.knative-playbook.item.failed.v1"
COMPLETED = "io.knative-playbook.job.completed.v1"


def result(job_id: str, index: int, ok: bool = True, **data: Any) -> tuple[dict[str, str], bytes]:
    payload: dict[str, Any] = {"job_id": job_id, "index": index, **data}
    if ok:
        payload.setdefault("sku", f"S{index}")
        payload.setdefault("change", "created")
    else:
        payload.setdefault("reason", f"item {index} is bad")
    headers = {
        "ce-specversion": "1.0",
        "ce-id": f"{job_id}:{index}:result",
        "ce-source": "/knative-playbook/item-processor",
        "ce-type": PROCESSED if ok else FAILED,
        "content-type": "application/json",
    }
    return headers, json.dumps(payload).encode()


@dataclass
class Aggregator:
    client: httpx.AsyncClient
    db: Any

    async def post(self, message: tuple[dict[str, str], bytes]) -> httpx.Response:
        headers, body = message
        return await self.client.post("/", headers=headers, content=body)

    async def job(self, total: int | None) -> str:
        """A job as bulk-jobs creates it."""
        job_id = new_job_id()
        at = now()
        await self.db["bulk_jobs"].insert_one(
            {
                "_id": job_id,
                "status": "RUNNING",
                "source": {"kind": "inline"},
                "total": total,
                "emitted": total or 0,
                "position": total or 0,
                "emission": "done",
                "created_at": at,
                "updated_at": at,
            }
        )
        return job_id

    async def completed(self, job_id: str) -> dict[str, Any]:
        async def done() -> dict[str, Any] | None:
            job = await self.db["bulk_jobs"].find_one({"_id": job_id})
            return job if job["status"] == "COMPLETED" else None

        return await wait_for(done, f"job {job_id} completed")


Start = Callable[..., AbstractAsyncContextManager[Aggregator]]


@pytest.fixture
async def broker() -> AsyncIterator[RecordingBroker]:
    async with RecordingBroker() as server:
        yield server


@pytest.fixture
def start(
    mongo_server: MongoServer, mongo_db_name: str, mongo_db: Any, broker: RecordingBroker
) -> Start:
    defaults = {
        "environment": "dev",
        "mongo_url": mongo_server.url,
        "mongo_db": mongo_db_name,
        "mongo_timeout_seconds": 2.0,
        "k_sink": broker.url,
        "check_interval_seconds": 0.05,
    }
    return app_starter(
        create_app,
        Settings.model_validate,
        lambda fn, client: Aggregator(client, mongo_db),
        defaults,
        base_url="http://agg",
    )


async def test_every_result_counts_once_and_the_job_completes_once(
    start: Start, broker: RecordingBroker
) -> None:
    async with start() as agg:
        job_id = await agg.job(40)
        messages = [result(job_id, n, ok=n % 5 != 0) for n in range(40)]
        # Every result delivered three times, concurrently, as at-least-once allows.
        responses = await asyncio.gather(*(agg.post(m) for m in messages * 3))
        job = await agg.completed(job_id)
        await wait_for(lambda: _emitted(broker, COMPLETED), "job.completed emitted")

    assert {r.status_code for r in responses} == {204}
    assert (job["succeeded"], job["failed"]) == (32, 8)
    [completed] = [p for p in broker.accepted if p.type == COMPLETED]
    assert completed.id == f"{job_id}:completed"
    assert completed.headers["ce-subject"] == job_id
    data = completed.data()
    assert (data["job_id"], data["total"], data["succeeded"], data["failed"]) == (
        job_id,
        40,
        32,
        8,
    )


async def test_failed_results_keep_their_reason_and_detail(start: Start) -> None:
    async with start() as agg:
        job_id = await agg.job(2)
        await agg.post(result(job_id, 0, ok=False, reason="price: too fine", errors=[{"loc": []}]))
        # What dead-letter sends for an item whose request was dead-lettered.
        await agg.post(
            result(
                job_id,
                1,
                ok=False,
                reason="dead-lettered after retries: 503",
                dead_letter_id="d1",
                ignored={"$gt": 1},
            )
        )
        await agg.completed(job_id)
        docs = await agg.db[RESULTS].find({"job_id": job_id}).sort("_id").to_list()

    assert [(d["outcome"], d["reason"]) for d in docs] == [
        ("failed", "price: too fine"),
        ("failed", "dead-lettered after retries: 503"),
    ]
    assert docs[0]["detail"] == {"errors": [{"loc": []}]}
    assert docs[1]["detail"] == {"dead_letter_id": "d1"}


async def test_the_first_result_of_an_item_is_the_one_that_counts(start: Start) -> None:
    async with start() as agg:
        job_id = await agg.job(1)
        await agg.post(result(job_id, 0, ok=False))
        await agg.post(result(job_id, 0, ok=True))
        job = await agg.completed(job_id)

    assert (job["succeeded"], job["failed"]) == (0, 1)


async def test_results_before_the_total_is_known_complete_the_job_once_it_is(
    start: Start,
) -> None:
    async with start(sweep_interval_seconds=0.2) as agg:
        job_id = await agg.job(None)
        for n in range(3):
            assert (await agg.post(result(job_id, n))).status_code == 204
        await asyncio.sleep(0.3)
        assert (await agg.db["bulk_jobs"].find_one({"_id": job_id}))["status"] == "RUNNING"
        await agg.db["bulk_jobs"].update_one({"_id": job_id}, {"$set": {"total": 3}})
        job = await agg.completed(job_id)

    assert job["succeeded"] == 3


@pytest.mark.parametrize(
    ("make", "status"),
    [
        (lambda job_id: result("f" * 32, 0), 422),  # no such job
        (lambda job_id: result(job_id, 5), 422),  # beyond the job's items
        (lambda job_id: result(job_id, -1), 400),
        (lambda job_id: (result(job_id, 0)[0], b'{"index": 0}'), 400),
        (lambda job_id: (result(job_id, 0)[0], b"[1]"), 400),
    ],
)
async def test_a_result_for_no_item_of_a_job_is_refused(
    start: Start, make: Callable[[str], tuple[dict[str, str], bytes]], status: int
) -> None:
    async with start() as agg:
        job_id = await agg.job(5)
        response = await agg.post(make(job_id))

    assert response.status_code == status


async def test_a_job_left_short_by_a_crash_is_recounted_by_the_sweep(
    start: Start, broker: RecordingBroker
) -> None:
    async with start(sweep_interval_seconds=0.2, repair_after_seconds=0.5) as agg:
        job_id = await agg.job(3)
        await agg.post(result(job_id, 0))
        # Results written by a process that died before writing their tally.
        await agg.db[RESULTS].insert_many(
            [
                {
                    "_id": result_id(job_id, n),
                    "job_id": job_id,
                    "index": n,
                    "outcome": "succeeded",
                    "batch": uuid.uuid4().hex,
                    "at": now(),
                }
                for n in (1, 2)
            ]
        )
        assert (await agg.post(result(job_id, 1))).status_code == 204  # a duplicate now
        job = await agg.completed(job_id)

    assert (job["succeeded"], job["failed"]) == (3, 0)


async def _emitted(broker: RecordingBroker, event_type: str) -> bool:
    return any(p.type == event_type for p in broker.accepted)
