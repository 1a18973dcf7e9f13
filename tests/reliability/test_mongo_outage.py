"""MongoDB stopped or killed under steady traffic, then restarted: nothing acknowledged is lost.

Events flow client -> devplane -> recorder (an idempotent, Mongo-backed function) while REST
writes go to products-api. During the outage the functions answer 503 and report not ready;
devplane retries the events; when the server is back, every event devplane accepted has its
effect exactly once (or sits in the dead-letter sink) and every product the API acknowledged
with 201 can be read back.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from devplane.servers import MongoServer

from tests.products_api.helpers import PRODUCT
from tests.reliability.harness import (
    FAULTS,
    StartFunction,
    binary_headers,
    event_outcomes,
    plane_values,
    report,
    start_plane,
    status_of,
    steady,
    wait_until,
)
from tests.reliability.recorder import RECORDED
from tests.support.sinks import EventSink

pytestmark = pytest.mark.e2e

OUTAGE_SECONDS = 3.0


@pytest.mark.parametrize("fault", FAULTS)
async def test_a_mongodb_outage_loses_no_acknowledged_write_and_no_event(
    fault: str,
    function_process: StartFunction,
    service_env: dict[str, str],
    mongo_server: MongoServer,
    mongo_db: Any,
    tmp_path: Path,
) -> None:
    sink = EventSink()
    await sink.start()
    recorder = await asyncio.to_thread(
        function_process,
        "tests.reliability.recorder:app",
        # The lease bounds how long an event claimed just as MongoDB vanished waits (409s)
        # before a retry may take it over: the claim cannot be released while the server is down.
        {**service_env, "IDEMPOTENCY_LEASE_SECONDS": "5"},
        name="recorder",
    )
    trigger = {"name": "recorded", "filter": {"attributes": {"type": RECORDED}}}
    values = plane_values(
        tmp_path / "routes.json",
        {"recorder": {"url": recorder.url, "triggers": [trigger]}},
        dead_letter_url=sink.url,
    )
    plane = await asyncio.to_thread(start_plane, function_process, service_env, values)
    api = await asyncio.to_thread(
        function_process,
        "products_api.main:app",
        {**service_env, "K_SINK": f"{plane.url}/"},
        name="products-api",
    )
    stop = asyncio.Event()
    async with httpx.AsyncClient(timeout=10) as client:

        async def send_event(seq: int) -> tuple[str, int | None]:
            headers = binary_headers(RECORDED)
            response = await client.post(f"{plane.url}/", headers=headers, json={"seq": seq})
            return headers["ce-id"], response.status_code

        async def write_product(seq: int) -> tuple[str, int | None]:
            product = {**PRODUCT, "sku": f"REL-{fault.upper()}-{seq}"}
            response = await client.post(f"{api.url}/products", json=product)
            key = response.json()["id"] if response.status_code == 201 else f"#{seq}"
            return key, response.status_code

        events = asyncio.create_task(steady(send_event, stop, {202}))
        writes = asyncio.create_task(steady(write_product, stop, {201}))
        await asyncio.sleep(2)

        down_at = time.monotonic()
        await asyncio.to_thread(getattr(mongo_server, fault))

        async def not_ready() -> bool:
            return await status_of(client, f"{recorder.url}/health/readiness") == 503

        readiness_false_after = await wait_until(not_ready, "readiness to turn false")
        await asyncio.sleep(OUTAGE_SECONDS)
        await asyncio.to_thread(mongo_server.start)
        back_at = time.monotonic()

        async def ready() -> bool:
            statuses = [
                await status_of(client, f"{p.url}/health/readiness") for p in (recorder, api)
            ]
            return statuses == [200, 200]

        ready_after = await wait_until(ready, "readiness to come back")

        await asyncio.sleep(3)
        stop.set()
        sent, written = await events, await writes
        write_recovery = written.first_ack_after(back_at)
        assert write_recovery is not None, "no REST write succeeded after MongoDB came back"

        async def settled() -> bool:
            outcomes = await event_outcomes(client, plane.url, sent.acked)
            return all(o in ("delivered", "dead-lettered") for o in outcomes.values())

        await wait_until(settled, "devplane to settle every accepted event")
        outcomes = await event_outcomes(client, plane.url, sent.acked)
        for product_id in written.acked:
            response = await client.get(f"{api.url}/products/{product_id}")
            assert response.status_code == 200, f"acknowledged product {product_id} is lost"

    assert sent.server_errors == 0 and sent.errors == 0, "devplane's ingress needs no MongoDB"
    assert written.acked, "no REST write was acknowledged"
    assert set(written.refused) <= {503}, f"REST writes refused otherwise: {written.refused}"
    unsettled = {i: o for i, o in outcomes.items() if o not in ("delivered", "dead-lettered")}
    assert not unsettled, f"events neither delivered nor dead-lettered: {unsettled}"
    effects = {doc["_id"] async for doc in mongo_db["effects"].find({}, {"_id": 1})}
    delivered = {i for i, o in outcomes.items() if o == "delivered"}
    dead_lettered = {i for i, o in outcomes.items() if o == "dead-lettered"}
    assert delivered <= effects, f"delivered without an effect: {delivered - effects}"
    assert dead_lettered <= set(sink.ids()), "dead-lettered events missing from the sink"
    assert effects <= set(sent.acked)
    await sink.stop()
    report(
        f"mongodb-{fault}",
        {
            "events_accepted": len(sent.acked),
            "events_delivered": len(delivered),
            "events_dead_lettered": len(dead_lettered),
            "rest_acked": len(written.acked),
            "rest_refused": written.refused,
            "readiness_false_after_s": round(readiness_false_after, 2),
            "ready_after_return_s": round(ready_after, 2),
            "first_rest_write_after_return_s": round(write_recovery, 2),
            "outage_s": round(back_at - down_at, 2),
            "dead_letter_codes": [e.get_extension("knativeerrorcode") for e in sink.events],
        },
    )
