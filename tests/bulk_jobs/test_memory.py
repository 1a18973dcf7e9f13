"""A JSON Lines job far larger than memory should need: bulk-jobs streams it, as a process.

bulk-jobs runs as `fnkit-serve bulk_jobs.main:app` against the real MongoDB-protocol server
and MinIO, emitting to a recording broker. The object is larger than the growth of the
process's peak RSS allowed here, so holding it whole (let alone parsed) would fail the test.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest
from devplane.servers import FunctionProcess

from tests.support.sinks import RecordingBroker
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

LINES = int(os.environ.get("BULK_JOBS_MEMORY_LINES", "100000"))
MIB = 1 << 20


def peak_rss(pid: int) -> int:
    """The process's peak resident set size so far (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def jsonl(lines: int) -> bytes:
    padding = "Lightweight, breathable and built to last. " * 12
    return b"".join(
        orjson.dumps(
            {
                "sku": f"BIG-{n:07d}",
                "name": f"Product {n}",
                "description": padding,
                "price": f"{n % 1000}.{n % 100:02d}",
                "currency": "EUR",
                "stock": n % 50,
                "tags": ["bulk", "import"],
            }
        )
        + b"\n"
        for n in range(lines)
    )


async def test_a_large_json_lines_job_is_emitted_with_bounded_memory(
    function_process: Callable[..., FunctionProcess],
    service_env: dict[str, str],
    upload: Callable[[bytes], dict[str, str]],
) -> None:
    data = jsonl(LINES)
    source = upload(data)
    broker = RecordingBroker(keep_bodies=False)
    await broker.start()
    try:
        proc = function_process(
            "bulk_jobs.main:app",
            env={**service_env, "K_SINK": broker.url, "LOG_LEVEL": "WARNING"},
            name="bulk-jobs",
        )
        assert proc.process is not None
        pid = proc.process.pid
        async with httpx.AsyncClient(base_url=proc.url, timeout=30) as client:
            before = peak_rss(pid)
            job_id = (await client.post("/jobs", json={"source": source})).json()["id"]

            async def emitted() -> dict[str, object] | None:
                job = (await client.get(f"/jobs/{job_id}")).json()
                return job if job["emitted"] == LINES else None

            job = await wait_for(emitted, f"{LINES} items emitted", within=840)
        after = peak_rss(pid)
    finally:
        await broker.close()

    assert job["total"] == LINES
    assert len(broker.ids()) == LINES
    growth = after - before
    assert growth < len(data) / 2, (
        f"peak RSS grew by {growth / MIB:.1f} MiB (from {before / MIB:.1f} to "
        f"{after / MIB:.1f} MiB) for a {len(data) / MIB:.1f} MiB object"
    )
