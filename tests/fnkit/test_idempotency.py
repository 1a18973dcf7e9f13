"""At-least-once delivery: a redelivered event has its side effects once (real MongoDB)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fnkit import CloudEvent, Context, Function
from fnkit.events import new_event
from fnkit.idempotency import COLLECTION, event_key, record_id
from pymongo.errors import DuplicateKeyError

from tests.fnkit.helpers import SOURCE, metric, serve, settings_from, unique_name
from tests.fnkit.sample_functions import (
    ATTEMPTS,
    COUNTED,
    RECEIPTED,
    RECORDED,
    RECORDS,
    SampleSettings,
)
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

MODES = ["binary", "structured"]
GATED = "io.knative-playbook.test.gated.v1"


async def test_server_reports_a_duplicate_id_as_duplicate_key_error(mongo_db: Any) -> None:
    """The guard's claim relies on this; FerretDB must behave as MongoDB does."""
    collection = mongo_db["claims"]
    await collection.insert_one({"_id": "k", "owner": "first"})

    with pytest.raises(DuplicateKeyError):
        await collection.insert_one({"_id": "k", "owner": "second"})

    assert await collection.count_documents({}) == 1
    assert (await collection.find_one({"_id": "k"}))["owner"] == "first"


@pytest.mark.parametrize("mode", MODES)
async def test_redelivery_does_the_side_effect_once_and_replies_the_same(
    mongo_app: Function[SampleSettings], mongo_db: Any, mode: str
) -> None:
    async with serve(mongo_app) as served:
        send = served.binary if mode == "binary" else served.structured
        first = await send(RECORDED, {"key": "a"}, id="evt-1")
        second = await send(RECORDED, {"key": "a"}, id="evt-1")
        samples = await served.metrics()

    assert first.status_code == second.status_code == 200
    assert first.headers["ce-type"] == second.headers["ce-type"] == RECEIPTED
    assert second.headers["ce-id"] == first.headers["ce-id"]
    assert second.json() == first.json()
    assert await mongo_db[RECORDS].count_documents({}) == 1
    assert (await mongo_db[ATTEMPTS].find_one({"_id": "a"}))["n"] == 1
    name = mongo_app.name
    assert (
        metric(samples, "fnkit_invocations_total", function=name, type=RECORDED, outcome="ok") == 1
    )
    assert (
        metric(
            samples, "fnkit_invocations_total", function=name, type=RECORDED, outcome="duplicate"
        )
        == 1
    )
    outcomes = [line["outcome"] for line in served.logs.named("invocation")]
    assert outcomes == ["ok", "duplicate"]


async def test_same_id_from_another_source_is_another_event(
    mongo_app: Function[SampleSettings], mongo_db: Any
) -> None:
    async with serve(mongo_app) as served:
        first = await served.binary(RECORDED, {"key": "a"}, id="evt-1", source="/one")
        second = await served.binary(RECORDED, {"key": "b"}, id="evt-1", source="/two")

    assert first.status_code == second.status_code == 200
    assert await mongo_db[RECORDS].count_documents({}) == 2


async def test_failed_attempt_releases_the_claim_so_the_retry_runs(
    mongo_app: Function[SampleSettings], mongo_db: Any
) -> None:
    async with serve(mongo_app) as served:
        failed = await served.binary(RECORDED, {"key": "f", "fail_times": 1}, id="evt-f")
        retried = await served.binary(RECORDED, {"key": "f", "fail_times": 1}, id="evt-f")
        again = await served.binary(RECORDED, {"key": "f", "fail_times": 1}, id="evt-f")

    assert failed.status_code == 503
    assert failed.json()["error"]["message"] == "attempt 1 fails on purpose"
    assert retried.status_code == 200
    assert again.status_code == 200
    assert again.json() == retried.json()
    assert (await mongo_db[ATTEMPTS].find_one({"_id": "f"}))["n"] == 2
    assert await mongo_db[RECORDS].count_documents({}) == 1


async def test_event_without_reply_is_remembered_as_done(
    service_env: dict[str, str], mongo_db: Any
) -> None:
    fn: Function[SampleSettings] = Function(
        unique_name(),
        settings_class=SampleSettings,
        settings=settings_from(service_env),
        mongo=True,
    )
    calls: list[str] = []

    @fn.on(GATED, idempotent=True)
    async def remember(event: CloudEvent, ctx: Context[SampleSettings]) -> None:
        calls.append(event.get_id())

    async with serve(fn) as served:
        first = await served.binary(GATED, {}, id="evt-n")
        second = await served.binary(GATED, {}, id="evt-n")

    assert first.status_code == second.status_code == 204
    assert calls == ["evt-n"]
    stored = await mongo_db[COLLECTION].find_one({"_id": record_of(fn, "evt-n")})
    assert stored["state"] == "done"


def record_of(fn: Function[Any], event_id: str, source: str = SOURCE) -> str:
    """The `_id` of `fn`'s idempotency record for the event (source, event_id)."""
    return record_id(fn.name, event_key(new_event("t", source, id=event_id)))


@pytest.fixture
def gated_app(service_env: dict[str, str]) -> tuple[Function[SampleSettings], dict[str, Any]]:
    """A function whose idempotent handler waits for the test to open a gate."""
    return gated_function(service_env)


def gated_function(
    service_env: dict[str, str], **overrides: Any
) -> tuple[Function[SampleSettings], dict[str, Any]]:
    fn: Function[SampleSettings] = Function(
        unique_name(),
        settings_class=SampleSettings,
        settings=settings_from(service_env, **overrides),
        mongo=True,
    )
    state: dict[str, Any] = {"entered": asyncio.Event(), "gate": asyncio.Event(), "runs": 0}

    @fn.on(GATED, idempotent=True)
    async def gated(event: CloudEvent, ctx: Context[SampleSettings]) -> CloudEvent:
        state["runs"] += 1
        state["entered"].set()
        await state["gate"].wait()
        return ctx.event(RECEIPTED, {"run": state["runs"]})

    return fn, state


async def test_concurrent_duplicate_while_running_gets_409(
    gated_app: tuple[Function[SampleSettings], dict[str, Any]],
) -> None:
    fn, state = gated_app
    async with serve(fn) as served:
        first = asyncio.create_task(served.binary(GATED, {}, id="evt-c"))
        await state["entered"].wait()
        duplicate = await served.binary(GATED, {}, id="evt-c")
        in_flight = metric(await served.metrics(), "fnkit_in_flight", function=fn.name)
        state["gate"].set()
        finished = await first
        later = await served.binary(GATED, {}, id="evt-c")

    assert duplicate.status_code == 409
    error = duplicate.json()["error"]
    assert error["code"] == "conflict"
    assert "is being processed by another delivery; retry later" in error["message"]
    assert in_flight == 1
    assert finished.status_code == 200
    assert later.status_code == 200
    assert later.json() == finished.json() == {"run": 1}
    assert state["runs"] == 1


async def test_a_handler_outlasting_its_lease_keeps_it_while_it_runs(
    service_env: dict[str, str], mongo_db: Any
) -> None:
    fn, state = gated_function(service_env, idempotency_lease_seconds=0.6)
    async with serve(fn) as served:
        first = asyncio.create_task(served.binary(GATED, {}, id="evt-long"))
        await state["entered"].wait()
        await asyncio.sleep(2.0)  # more than three leases: only renewals keep the claim
        claim = await mongo_db[COLLECTION].find_one({"_id": record_of(fn, "evt-long")})
        second = asyncio.create_task(served.binary(GATED, {}, id="evt-long"))

        async def settled() -> bool:
            # Answered at once (409), or, were the claim taken over, running the work again.
            return second.done() or state["runs"] > 1

        await wait_for(settled, "the redelivery's answer or its run")
        state["gate"].set()
        duplicate, finished = await second, await first

    assert duplicate.status_code == 409
    assert claim["state"] == "running"
    assert claim["lease_until"].replace(tzinfo=UTC) > claim["claimed_at"].replace(
        tzinfo=UTC
    ) + timedelta(seconds=1.5), "renewed while the handler ran"
    assert finished.status_code == 200
    assert state["runs"] == 1


async def test_expired_lease_is_taken_over(
    gated_app: tuple[Function[SampleSettings], dict[str, Any]], mongo_db: Any
) -> None:
    fn, state = gated_app
    state["gate"].set()
    past = datetime.now(UTC) - timedelta(minutes=5)
    await mongo_db[COLLECTION].insert_one(
        {
            "_id": record_of(fn, "evt-crashed"),
            "state": "running",
            "owner": "a-crashed-pod",
            "lease_until": past,
            "claimed_at": past - timedelta(minutes=2),
        }
    )

    async with serve(fn) as served:
        response = await served.binary(GATED, {}, id="evt-crashed")

    assert response.status_code == 200
    assert state["runs"] == 1
    stored = await mongo_db[COLLECTION].find_one({"_id": record_of(fn, "evt-crashed")})
    assert stored["state"] == "done"
    assert stored["owner"] != "a-crashed-pod"


async def test_live_lease_of_another_delivery_is_respected(
    gated_app: tuple[Function[SampleSettings], dict[str, Any]], mongo_db: Any
) -> None:
    fn, state = gated_app
    state["gate"].set()
    now = datetime.now(UTC)
    await mongo_db[COLLECTION].insert_one(
        {
            "_id": record_of(fn, "evt-other"),
            "state": "running",
            "owner": "another-pod",
            "lease_until": now + timedelta(minutes=5),
            "claimed_at": now,
        }
    )

    async with serve(fn) as served:
        response = await served.binary(GATED, {}, id="evt-other")

    assert response.status_code == 409
    assert state["runs"] == 0


async def test_business_key_runs_work_once_across_event_ids(
    mongo_app: Function[SampleSettings], mongo_db: Any
) -> None:
    async with serve(mongo_app) as served:
        first = await served.binary(COUNTED, {"order_id": "o-1"}, id="evt-1")
        second = await served.binary(COUNTED, {"order_id": "o-1"}, id="evt-2")
        other = await served.binary(COUNTED, {"order_id": "o-2"}, id="evt-3")

    assert first.status_code == second.status_code == other.status_code == 200
    assert first.json() == second.json() == {"order_id": "o-1", "first_event": "evt-1"}
    assert other.json() == {"order_id": "o-2", "first_event": "evt-3"}
    assert await mongo_db[RECORDS].count_documents({}) == 2


async def test_one_event_delivered_to_two_functions_runs_in_each(
    service_env: dict[str, str], mongo_db: Any
) -> None:
    """Two Triggers on one type: both functions share the collection, not their records."""
    calls: list[str] = []

    def subscriber() -> Function[SampleSettings]:
        fn: Function[SampleSettings] = Function(
            unique_name(),
            settings_class=SampleSettings,
            settings=settings_from(service_env),
            mongo=True,
        )

        @fn.on(GATED, idempotent=True)
        async def remember(event: CloudEvent, ctx: Context[SampleSettings]) -> None:
            calls.append(fn.name)

        return fn

    first_fn, second_fn = subscriber(), subscriber()
    async with serve(first_fn) as first, serve(second_fn) as second:
        answers = [
            await first.binary(GATED, {}, id="evt-shared"),
            await second.binary(GATED, {}, id="evt-shared"),
            await second.binary(GATED, {}, id="evt-shared"),  # a redelivery
        ]

    assert [a.status_code for a in answers] == [204, 204, 204]
    assert calls == [first_fn.name, second_fn.name]
