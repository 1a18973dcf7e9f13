"""products-api served as a real process: outbox across restarts, and a property-based run."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from devplane.servers import FunctionProcess, free_port

from tests.products_api.helpers import PRODUCT
from tests.support.sinks import EventSink
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

MODULE = "products_api.main:app"


def outbox_env(service_env: dict[str, str], sink: EventSink) -> dict[str, str]:
    return {
        **service_env,
        "K_SINK": sink.url,
        "EMIT_ATTEMPTS": "1",
        "OUTBOX_SWEEP_INTERVAL_SECONDS": "0.2",
        "OUTBOX_GRACE_SECONDS": "0",
    }


async def sweeps(url: str, outcome: str) -> int:
    """How many sweeps of this outcome the process has completed (from /metrics)."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{url}/metrics")).text
    found = re.search(rf'^products_outbox_sweeps_total{{outcome="{outcome}"}} (\S+)$', text, re.M)
    return int(float(found[1])) if found else 0


async def two_more_sweeps(url: str) -> None:
    """Let the periodic sweep run twice more, so that a second delivery would have happened."""
    start = await sweeps(url, "complete")

    async def done() -> bool:
        return await sweeps(url, "complete") >= start + 2

    await wait_for(done, "two more sweeps")


async def pending_events(mongo_db: Any) -> list[str]:
    """Events not sent yet: creates' staged beside the products, the rest in their outboxes."""
    staged = await mongo_db["products_outbox"].find({}, {"_id": 1}).to_list()
    docs = await mongo_db["products"].find({}, {"outbox": 1}).to_list()
    in_docs = [entry["id"] for doc in docs for entry in doc.get("outbox", [])]
    return sorted([entry["_id"] for entry in staged] + in_docs)


async def start(
    function_process: Callable[..., FunctionProcess], env: dict[str, str]
) -> FunctionProcess:
    # Off the event loop: the event sink is served by this test's loop.
    return await asyncio.to_thread(function_process, MODULE, env, name="products-api")


async def test_events_left_while_the_broker_was_down_arrive_once_after_a_restart(
    function_process: Callable[..., FunctionProcess],
    service_env: dict[str, str],
    sink: EventSink,
    mongo_db: Any,
) -> None:
    env = outbox_env(service_env, sink)
    api = await start(function_process, env)
    async with httpx.AsyncClient(base_url=api.url) as client:
        ids = []
        for n in range(3):
            response = await client.post("/products", json={**PRODUCT, "sku": f"R{n}"})
            assert response.status_code == 201
            ids.append(response.json()["id"])
        patched = await client.patch(
            f"/products/{ids[0]}", json={"stock": 0}, headers={"If-Match": '"1"'}
        )
        assert patched.status_code == 200
        assert (await client.delete(f"/products/{ids[1]}")).status_code == 204
    expected = sorted(
        [f"{ids[0]}-v1", f"{ids[0]}-v2", f"{ids[1]}-v1", f"{ids[1]}-v2", f"{ids[2]}-v1"]
    )
    assert await pending_events(mongo_db) == expected
    await asyncio.to_thread(api.stop)

    await sink.start()
    api = await start(function_process, env)

    async def delivered() -> bool:
        return await pending_events(mongo_db) == []

    await wait_for(delivered, "the start-up sweep to deliver every pending event")
    await two_more_sweeps(api.url)
    assert sorted(sink.ids()) == expected
    assert await mongo_db["products"].count_documents({}) == 2  # the tombstone is gone


async def test_the_periodic_sweep_delivers_exactly_once_when_the_broker_returns(
    function_process: Callable[..., FunctionProcess],
    service_env: dict[str, str],
    sink: EventSink,
    mongo_db: Any,
) -> None:
    api = await start(function_process, outbox_env(service_env, sink))
    async with httpx.AsyncClient(base_url=api.url) as client:
        response = await client.post("/products", json=PRODUCT)
        assert response.status_code == 201
        event_id = f"{response.json()['id']}-v1"

        async def refused_by_a_sweep() -> bool:
            return await sweeps(api.url, "broker_unavailable") >= 1

        await wait_for(refused_by_a_sweep, "a sweep to find the broker down")
        assert await pending_events(mongo_db) == [event_id]

        await sink.start()

        async def delivered() -> bool:
            return await pending_events(mongo_db) == []

        await wait_for(delivered, "the periodic sweep to deliver the event")
        await two_more_sweeps(api.url)
    assert sink.ids() == [event_id]


def test_schemathesis_finds_no_server_errors_or_schema_violations(
    function_process: Callable[..., FunctionProcess],
    service_env: dict[str, str],
    tmp_path: Path,
) -> None:
    env = {
        **service_env,
        "K_SINK": f"http://127.0.0.1:{free_port()}/",
        "EMIT_ATTEMPTS": "1",
        "LOG_LEVEL": "WARNING",
    }
    api = function_process(MODULE, env, name="products-api")
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    assert st is not None, "schemathesis is in the dev dependency group"
    run = subprocess.run(
        [
            st,
            "run",
            f"{api.url}/openapi.json",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--checks",
            "all",
            # Schema-valid requests the API rightly refuses: a stale or absent If-Match (412,
            # 428), a cursor it never issued, a price finer than its currency allows (422).
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            "30",
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:] + api.log_tail()
    assert "No issues found" in run.stdout or " passed" in run.stdout, run.stdout[-3000:]
