"""A bounded mixed-traffic soak: events through devplane and REST on products-api at once.

CI runs it for SOAK_SECONDS (default 60); `make soak` runs the long form (RELIABILITY_LONG=1,
SOAK_SECONDS=600). Reported: error rate, p50/p99 latency per kind of request, and each
process's RSS over time. Asserted: no 5xx, every accepted event delivered exactly once in
effect, every acknowledged write readable, and (long form) RSS growth after warm-up <= 10%.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from devplane.servers import FunctionProcess

from tests.products_api.helpers import PRODUCT
from tests.reliability.harness import (
    LONG,
    StartFunction,
    binary_headers,
    plane_values,
    report,
    start_plane,
    steady,
    wait_until,
)
from tests.reliability.recorder import RECORDED
from tests.support.sinks import EventSink

pytestmark = pytest.mark.e2e

SECONDS = float(os.environ.get("SOAK_SECONDS", "600" if LONG else "60"))
WARM_UP = SECONDS / 4
SAMPLE_EVERY = 2.0
RSS_GROWTH_LIMIT = 0.10


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def tree_rss(pid: int) -> int:
    """RSS of a process and its children (fnkit-serve runs the app in the process it starts)."""
    parent = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [parent, *parent.children(recursive=True)])


async def sample_rss(
    processes: dict[str, FunctionProcess], stop: asyncio.Event
) -> dict[str, list[tuple[float, int]]]:
    began = time.monotonic()
    samples: dict[str, list[tuple[float, int]]] = {name: [] for name in processes}
    while not stop.is_set():
        for name, process in processes.items():
            assert process.process is not None
            samples[name].append((time.monotonic() - began, tree_rss(process.process.pid)))
        await asyncio.sleep(SAMPLE_EVERY)
    return samples


def growth_after_warm_up(samples: list[tuple[float, int]]) -> float:
    """Last-quarter median RSS over the median of the quarter just after warm-up, minus 1."""
    steady_state = [rss for at, rss in samples if at >= WARM_UP]
    quarter = max(1, len(steady_state) // 4)
    first = statistics.median(steady_state[:quarter])
    last = statistics.median(steady_state[-quarter:])
    return last / first - 1


async def test_mixed_traffic_holds_without_errors_or_memory_growth(
    function_process: StartFunction, service_env: dict[str, str], mongo_db: Any, tmp_path: Path
) -> None:
    sink = EventSink()
    await sink.start()
    recorder = await asyncio.to_thread(
        function_process, "tests.reliability.recorder:app", service_env, name="recorder"
    )
    trigger = {"name": "recorded", "filter": {"attributes": {"type": RECORDED}}}
    values = plane_values(
        tmp_path / "routes.json",
        {"recorder": {"url": recorder.url, "triggers": [trigger]}},
        dead_letter_url=sink.url,
    )
    plane = await asyncio.to_thread(
        start_plane, function_process, service_env, values, DEVPLANE_EVENT_LOG_SIZE="100000"
    )
    api = await asyncio.to_thread(
        function_process,
        "products_api.main:app",
        {**service_env, "K_SINK": f"{plane.url}/", "LOG_LEVEL": "WARNING"},
        name="products-api",
    )
    processes = {"devplane": plane, "recorder": recorder, "products-api": api}
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=20)
    async with httpx.AsyncClient(timeout=10, limits=limits) as client:

        async def event(seq: int) -> tuple[str, int | None]:
            headers = binary_headers(RECORDED)
            response = await client.post(f"{plane.url}/", headers=headers, json={"seq": seq})
            return headers["ce-id"], response.status_code

        async def write(seq: int) -> tuple[str, int | None]:
            product = {**PRODUCT, "sku": f"SOAK-{seq}-{os.getpid()}"}
            response = await client.post(f"{api.url}/products", json=product)
            key = response.json().get("id", f"#{seq}") if response.status_code == 201 else ""
            return key, response.status_code

        async def read(seq: int) -> tuple[str, int | None]:
            response = await client.get(f"{api.url}/products", params={"limit": 20})
            return f"page-{seq}", response.status_code

        rss = asyncio.create_task(sample_rss(processes, stop))
        tasks = {
            # Below what the idempotent recorder sustains on FerretDB beside the REST traffic
            # (about 12 events/s on two busy cores), so that the backlog stays bounded.
            "event": [asyncio.create_task(steady(event, stop, {202}, 0.1))],
            "write": [asyncio.create_task(steady(write, stop, {201}, 0.05))],
            "read": [asyncio.create_task(steady(read, stop, {200}, 0.05))],
        }
        await asyncio.sleep(SECONDS)
        stop.set()
        results = {kind: [await t for t in group] for kind, group in tasks.items()}
        samples = await rss
        accepted = [i for r in results["event"] for i in r.acked]

        async def settled() -> bool:
            stored = {d["_id"] async for d in mongo_db["effects"].find({}, {"_id": 1})}
            return set(accepted) <= stored | set(sink.ids())

        stored_count = await mongo_db["effects"].count_documents({})
        print(f"\nsoak: {len(accepted)} accepted, {stored_count} in effect at the end of traffic")
        settle_seconds = await wait_until(
            settled, "every accepted event to take effect", within=SECONDS + 90
        )
        written = [i for r in results["write"] for i in r.acked]
        lost_writes = [
            i
            for i in written[:: max(1, len(written) // 50)]
            if (await client.get(f"{api.url}/products/{i}")).status_code != 200
        ]
    await sink.stop()

    figures: dict[str, Any] = {"seconds": SECONDS}
    for kind, outcomes_list in results.items():
        latencies = [x for r in outcomes_list for x in r.latencies]
        failed = sum(r.errors + sum(r.refused.values()) for r in outcomes_list)
        figures[kind] = {
            "requests": len(latencies),
            "per_s": round(len(latencies) / SECONDS, 1),
            "error_rate": round(failed / max(1, len(latencies)), 4),
            "p50_ms": round(percentile(latencies, 0.50) * 1000, 1),
            "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        }
    growth = {name: round(growth_after_warm_up(s), 3) for name, s in samples.items()}
    figures["rss_mb_start_end"] = {
        name: [round(s[0][1] / 2**20, 1), round(s[-1][1] / 2**20, 1)] for name, s in samples.items()
    }
    figures["rss_growth_after_warm_up"] = growth
    effects = {d["_id"] async for d in mongo_db["effects"].find({}, {"_id": 1})}
    figures["events_taking_effect"] = len(set(accepted) & effects)
    figures["events_dead_lettered"] = len(sink.ids())
    figures["backlog_drained_after_s"] = round(settle_seconds, 1)
    report("soak", figures)

    assert all(r.server_errors == 0 and r.errors == 0 for g in results.values() for r in g)
    assert effects <= set(accepted)
    assert not lost_writes
    if LONG:
        # Only the long form: a minute on a shared two-core machine is too noisy for a bound.
        assert all(g <= RSS_GROWTH_LIMIT for g in growth.values()), growth
