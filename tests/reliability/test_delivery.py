"""Delivery under at-least-once: duplicates, reordering, slow subscribers, restarts.

devplane plays the broker: its `duplicate_ratio` knob sends every delivered event twice, a
Trigger timeout shorter than a slow handler makes it retry an attempt that is still running,
and the subscriber or devplane itself is killed mid-traffic.
"""

from __future__ import annotations

import asyncio
import random
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
from devplane.servers import FunctionProcess

from tests.reliability.harness import (
    StartFunction,
    binary_headers,
    delivery,
    event_outcomes,
    plane_values,
    report,
    start_plane,
    steady,
    wait_until,
)
from tests.reliability.recorder import RECORDED
from tests.support.sinks import EventSink

pytestmark = pytest.mark.e2e


async def started(
    function_process: StartFunction, service_env: dict[str, str], tmp_path: Path, sink: EventSink
) -> tuple[FunctionProcess, FunctionProcess]:
    recorder = await asyncio.to_thread(
        function_process,
        "tests.reliability.recorder:app",
        {**service_env, "IDEMPOTENCY_LEASE_SECONDS": "5"},
        name="recorder",
    )
    trigger = {"name": "recorded", "filter": {"attributes": {"type": RECORDED}}}
    values = plane_values(
        tmp_path / "routes.json",
        {"recorder": {"url": recorder.url, "triggers": [trigger]}},
        dead_letter_url=sink.url,
        policy=delivery(retry=15, delay="PT0.2S", timeout="PT1S"),
    )
    plane = await asyncio.to_thread(start_plane, function_process, service_env, values)
    return recorder, plane


async def send(client: httpx.AsyncClient, plane: FunctionProcess, data: dict[str, Any]) -> str:
    headers = binary_headers(RECORDED)
    response = await client.post(f"{plane.url}/", headers=headers, json=data)
    assert response.status_code == 202, response.text
    return headers["ce-id"]


async def effects_of(mongo_db: Any) -> list[str]:
    return [doc["_id"] async for doc in mongo_db["effects"].find({}, {"_id": 1})]


async def test_duplicates_reordering_and_slow_attempts_leave_one_effect_per_event(
    function_process: StartFunction, service_env: dict[str, str], mongo_db: Any, tmp_path: Path
) -> None:
    sink = EventSink()
    await sink.start()
    _, plane = await started(function_process, service_env, tmp_path, sink)
    async with httpx.AsyncClient(timeout=10) as client:
        knobs = await client.post(f"{plane.url}/knobs", json={"duplicate_ratio": 1.0})
        assert knobs.status_code == 200
        # Out of order on purpose, and every fourth handler slower than the Trigger's timeout.
        order = list(range(40))
        random.Random(7).shuffle(order)
        ids = [
            await send(client, plane, {"seq": n, "sleep_seconds": 1.5 if n % 4 == 0 else 0})
            for n in order
        ]

        async def settled() -> bool:
            outcomes = await event_outcomes(client, plane.url, ids)
            return all(o in ("delivered", "dead-lettered") for o in outcomes.values())

        await wait_until(settled, "every event to settle")
        views = [
            (await client.get(f"{plane.url}/events", params={"id": i})).json()["events"][0]
            for i in ids
        ]
    await sink.stop()
    effects = await effects_of(mongo_db)
    assert sorted(effects) == sorted(ids), "one effect per event, none lost, none doubled"
    duplicates = sum(1 for v in views for d in v["deliveries"] if d.get("duplicate"))
    retried = sum(1 for v in views if v["deliveries"][0]["attempts"] > 1)
    assert duplicates == len(ids), "the knob sent every event twice"
    assert retried >= 1, "slow handlers hit the Trigger's timeout and were retried"
    report(
        "duplicates-slow",
        {
            "events": len(ids),
            "duplicates_sent": duplicates,
            "events_retried_after_timeout": retried,
        },
    )


async def test_a_subscriber_killed_mid_traffic_gets_every_event_after_its_restart(
    function_process: StartFunction, service_env: dict[str, str], mongo_db: Any, tmp_path: Path
) -> None:
    sink = EventSink()
    await sink.start()
    recorder, plane = await started(function_process, service_env, tmp_path, sink)
    stop = asyncio.Event()
    async with httpx.AsyncClient(timeout=10) as client:

        async def post(seq: int) -> tuple[str, int | None]:
            headers = binary_headers(RECORDED)
            response = await client.post(f"{plane.url}/", headers=headers, json={"seq": seq})
            return headers["ce-id"], response.status_code

        traffic = asyncio.create_task(steady(post, stop, {202}))
        await asyncio.sleep(1.5)
        await asyncio.to_thread(recorder.stop, signal.SIGKILL)
        await asyncio.sleep(2)
        await asyncio.to_thread(recorder.start)
        await asyncio.to_thread(recorder.wait_ready, 60)
        await asyncio.sleep(1.5)
        stop.set()
        sent = await traffic

        async def settled() -> bool:
            outcomes = await event_outcomes(client, plane.url, sent.acked)
            return all(o in ("delivered", "dead-lettered") for o in outcomes.values())

        await wait_until(settled, "every event to settle")
        outcomes = await event_outcomes(client, plane.url, sent.acked)
    await sink.stop()
    delivered = {i for i, o in outcomes.items() if o == "delivered"}
    dead = {i for i, o in outcomes.items() if o == "dead-lettered"}
    assert delivered | dead == set(sent.acked)
    assert delivered <= set(await effects_of(mongo_db))
    assert dead <= set(sink.ids())
    report(
        "subscriber-kill",
        {"accepted": len(sent.acked), "delivered": len(delivered), "dead_lettered": len(dead)},
    )


async def test_a_devplane_restart_loses_what_it_had_queued_and_nothing_it_delivered(
    function_process: StartFunction, service_env: dict[str, str], mongo_db: Any, tmp_path: Path
) -> None:
    """devplane's queues live in memory (a dev stand-in; Knative's channel persists them)."""
    sink = EventSink()
    await sink.start()
    _, plane = await started(function_process, service_env, tmp_path, sink)
    async with httpx.AsyncClient(timeout=10) as client:
        delivered = [await send(client, plane, {"seq": n}) for n in range(5)]

        async def done() -> bool:
            outcomes = await event_outcomes(client, plane.url, delivered)
            return set(outcomes.values()) == {"delivered"}

        await wait_until(done, "the first events to be delivered")
        await client.post(f"{plane.url}/knobs", json={"paused": True})
        queued = [await send(client, plane, {"seq": n}) for n in range(5, 10)]
        await asyncio.to_thread(plane.stop, signal.SIGKILL)
        with pytest.raises(httpx.ConnectError):
            await send(client, plane, {"seq": 99})  # a sender sees the outage: nothing silent
        await asyncio.to_thread(plane.start)
        await asyncio.to_thread(plane.wait_ready, 60)
        after = [await send(client, plane, {"seq": n}) for n in range(10, 15)]

        async def after_done() -> bool:
            outcomes = await event_outcomes(client, plane.url, after)
            return set(outcomes.values()) == {"delivered"}

        await wait_until(after_done, "events after the restart to be delivered")
        forgotten = await event_outcomes(client, plane.url, queued)
    await sink.stop()
    effects = set(await effects_of(mongo_db))
    assert set(delivered) | set(after) <= effects
    assert not effects & set(queued), "queued in memory when devplane died: lost, as documented"
    assert set(forgotten.values()) == {"missing"}
