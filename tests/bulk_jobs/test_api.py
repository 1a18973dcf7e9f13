"""bulk-jobs' REST API and fan-out, in-process on the real MongoDB and MinIO servers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from tests.bulk_jobs.conftest import App, AppFactory
from tests.support.sinks import RecordingBroker
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

ITEM_REQUESTED = "io.knative-playbook.item.requested.v1"


def product(n: int) -> dict[str, Any]:
    return {"sku": f"SKU-{n}", "name": f"Product {n}", "price": "9.99", "currency": "EUR"}


async def test_an_inline_job_emits_one_item_requested_per_item(
    app: App, broker: RecordingBroker
) -> None:
    items = [product(n) for n in range(25)]

    response = await app.client.post("/jobs", json={"items": items})

    assert response.status_code == 202
    job = response.json()
    assert response.headers["location"] == f"/jobs/{job['id']}"
    assert job["status"] == "RUNNING" and job["total"] == 25 and job["source"]["kind"] == "inline"
    await app.emitted(job["id"])
    assert sorted(broker.ids()) == sorted(f"{job['id']}:{n}" for n in range(25))
    assert max(broker.ids().values()) == 1
    posted = {p.id: p for p in broker.accepted}
    first = posted[f"{job['id']}:0"]
    assert first.type == ITEM_REQUESTED
    assert first.data() == {"job_id": job["id"], "index": 0, "record": items[0]}
    assert first.headers["ce-subject"] == f"{job['id']}/0"
    assert "ce-traceparent" in first.headers


async def test_the_job_shows_its_progress(app: App) -> None:
    job_id = (await app.client.post("/jobs", json={"items": [product(1)]})).json()["id"]

    job = await app.emitted(job_id)

    assert job["status"] == "RUNNING"  # nobody has reported a result yet
    assert (job["succeeded"], job["failed"], job["pending"], job["emitted"]) == (0, 0, 1, 1)
    assert job["completed_at"] is None


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"items": []},
        {"items": [{}], "source": {"bucket": "uploads", "key": "a.jsonl"}},
        {"source": {"bucket": "Not_A_Bucket", "key": "a.jsonl"}},
        # Found by schemathesis: names the pattern allows but S3 does not were a 500.
        {"source": {"bucket": "jbn-.ph0q", "key": "a.jsonl"}},
        {"source": {"bucket": "a..b", "key": "a.jsonl"}},
        {"source": {"bucket": "192.168.1.1", "key": "a.jsonl"}},
        {"items": [{}], "priority": "high"},
    ],
)
async def test_a_request_that_is_not_one_job_gets_422(app: App, body: dict[str, Any]) -> None:
    response = await app.client.post("/jobs", json=body)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


async def test_too_many_items_inline_get_422_naming_the_alternative(make_app: AppFactory) -> None:
    async with make_app(max_inline_items=3) as app:
        response = await app.client.post("/jobs", json={"items": [product(n) for n in range(4)]})

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "too_many_items"
    assert "JSON Lines" in response.json()["error"]["message"]


async def test_a_missing_object_gets_422(
    app: App, upload: Callable[[bytes], dict[str, str]]
) -> None:
    source = upload(b"{}\n")

    response = await app.client.post(
        "/jobs", json={"source": {**source, "key": "imports/nothing-here.jsonl"}}
    )

    assert response.status_code == 422
    assert "no object" in response.json()["error"]["message"]


async def test_unknown_jobs_are_404(app: App) -> None:
    missing = "0" * 32

    assert (await app.client.get(f"/jobs/{missing}")).status_code == 404
    assert (await app.client.get(f"/jobs/{missing}/results")).status_code == 404
    assert (await app.client.get("/jobs/not-an-id")).status_code == 422


async def test_an_object_job_learns_its_total_from_the_stream(
    app: App, broker: RecordingBroker, upload: Callable[[bytes], dict[str, str]]
) -> None:
    data = b"".join(orjson.dumps(product(n)) + b"\n" for n in range(40))
    source = upload(data)

    submitted = (await app.client.post("/jobs", json={"source": source})).json()
    job = await app.emitted(submitted["id"])

    assert submitted["total"] is None
    assert submitted["source"]["kind"] == "object" and submitted["source"]["size"] == len(data)
    assert job["total"] == 40
    records = {p.data()["index"]: p.data()["record"] for p in broker.accepted}
    assert records == {n: product(n) for n in range(40)}


async def test_lines_that_are_not_json_are_failed_items_with_their_reason(
    app: App, broker: RecordingBroker, upload: Callable[[bytes], dict[str, str]]
) -> None:
    source = upload(orjson.dumps(product(0)) + b"\n{oops\n" + orjson.dumps(product(2)))

    job_id = (await app.client.post("/jobs", json={"source": source})).json()["id"]
    job = await app.emitted(job_id)
    page = (await app.client.get(f"/jobs/{job_id}/results", params={"outcome": "failed"})).json()

    assert job["total"] == 3 and job["failed"] == 1 and job["pending"] == 2
    assert [p.data()["index"] for p in broker.accepted] in ([0, 2], [2, 0])
    [failed] = page["items"]
    assert failed["index"] == 1 and failed["outcome"] == "failed"
    assert failed["reason"].startswith("not valid JSON")


async def test_an_empty_object_completes_at_once(
    app: App, upload: Callable[[bytes], dict[str, str]]
) -> None:
    job_id = (await app.client.post("/jobs", json={"source": upload(b"\n\n")})).json()["id"]

    async def completed() -> dict[str, Any] | None:
        job = await app.job(job_id)
        return job if job["status"] == "COMPLETED" else None

    job = await wait_for(completed, "the empty job completed")
    assert (job["total"], job["succeeded"], job["failed"]) == (0, 0, 0)


async def test_a_broker_that_refuses_for_a_while_delays_items_but_loses_none(
    make_app: AppFactory, broker: RecordingBroker
) -> None:
    broker.answer = lambda n: 503 if 10 <= n < 40 else 202
    async with make_app(emit_concurrency=4) as app:
        job_id = (
            await app.client.post("/jobs", json={"items": [product(n) for n in range(30)]})
        ).json()["id"]
        await app.emitted(job_id)

    assert sorted(broker.ids()) == sorted(f"{job_id}:{n}" for n in range(30))


async def test_a_stopped_fan_out_resumes_from_its_checkpoint_without_repeating_items(
    make_app: AppFactory, broker: RecordingBroker, mongo_db: Any
) -> None:
    # The broker takes 120 events, then refuses everything until the app is restarted.
    taking = True
    broker.answer = lambda n: 202 if taking and n < 120 else 503
    items = [product(n) for n in range(300)]
    settings = {"emit_concurrency": 4, "checkpoint_every": 10, "resume_interval_seconds": 0.5}
    async with make_app(**settings) as app:
        job_id = (await app.client.post("/jobs", json={"items": items})).json()["id"]
        await wait_for(lambda: _at_least(broker, 120), "the broker took 120 events")
    taking = False
    stopped_at = (await mongo_db["bulk_jobs"].find_one({"_id": job_id}))["emitted"]
    broker.answer = lambda n: 202

    async with make_app(**settings) as app:
        await app.emitted(job_id)

    assert stopped_at == 120  # the checkpoint written on shutdown: every item taken so far
    assert sorted(broker.ids()) == sorted(f"{job_id}:{n}" for n in range(300))
    assert max(broker.ids().values()) == 1


async def _at_least(broker: RecordingBroker, count: int) -> bool:
    return len(broker.accepted) >= count
