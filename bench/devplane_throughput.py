"""devplane's delivery throughput: the fan-out path without the business logic.

`python -m bench.devplane_throughput [--items N]` posts N item events to devplane, which
delivers each to an echo function; each echo reply re-enters devplane and is delivered to a
counting function, as item.processed results go to job-aggregator. The baseline posts the
same N events straight to the echo function, with the same client: the ratio is what the
broker hop (ingress, queue, delivery, reply routing, second delivery) costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from devplane.httpclient import HttpClient, header_lines
from devplane.servers import FunctionProcess, free_port
from fnkit import CloudEvent, Context, Function
from fnkit.echo import ECHO_REPLY

ITEM = "io.knative-playbook.bench.item.v1"

counter_app: Function[Any] = Function("counter", description="Counts the events it receives.")
_received = 0


@counter_app.fallback()
async def count(event: CloudEvent, ctx: Context[Any]) -> None:
    global _received
    _received += 1


@counter_app.api.get("/count")
async def received() -> dict[str, int]:
    return {"received": _received}


async def _post_all(url: str, items: int, concurrency: int) -> float:
    """Post `items` binary events to `url`, `concurrency` at a time; return the seconds taken.

    With devplane's own client: httpx costs more CPU per request than the servers measured.
    """
    pending = iter(range(items))
    client = HttpClient()

    async def sender() -> None:
        for n in pending:
            head = header_lines(
                [
                    (b"ce-specversion", b"1.0"),
                    (b"ce-id", uuid.uuid4().hex.encode()),
                    (b"ce-type", ITEM.encode()),
                    (b"ce-source", b"/bench"),
                    (b"content-type", b"application/json"),
                ]
            )
            response = await client.post(url, head, b'{"n": %d}' % n)
            if response.status >= 300:
                raise RuntimeError(f"{url} answered {response.status}: {response.body[:200]!r}")

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await client.aclose()
    return elapsed


async def _wait_count(url: str, items: int, started: float) -> float:
    async with httpx.AsyncClient() as client:
        while True:
            if (await client.get(url + "/count")).json()["received"] >= items:
                return time.perf_counter() - started
            await asyncio.sleep(0.02)


async def _through_devplane(
    devplane: FunctionProcess, counter: FunctionProcess, items: int, concurrency: int
) -> float:
    started = time.perf_counter()
    await _post_all(devplane.url + "/", items, concurrency)
    return await _wait_count(counter.url, items, started)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, from /proc (clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.devplane_throughput", description=__doc__
    )
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=16, help="DEVPLANE_WORKERS")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="devplane-bench-"))
    env = {"ENVIRONMENT": "dev", "LOG_LEVEL": "WARNING"}
    echo = FunctionProcess(
        "echo", free_port(), root, env=env, module="fnkit.echo:app", log_path=root / "echo.log"
    )
    counter = FunctionProcess(
        "counter",
        free_port(),
        root,
        env=env,
        module="bench.devplane_throughput:counter_app",
        log_path=root / "counter.log",
    )
    values = root / "values.yaml"
    values.write_text(
        json.dumps(
            {
                "cronJobs": {"cleanup": {"enabled": False}},
                "functions": {
                    "echo": {
                        "url": echo.url,
                        "triggers": [{"name": "items", "filter": {"attributes": {"type": ITEM}}}],
                    },
                    "counter": {
                        "url": counter.url,
                        "triggers": [
                            {"name": "results", "filter": {"attributes": {"type": ECHO_REPLY}}}
                        ],
                    },
                },
            }
        )
    )
    port = free_port()
    devplane = FunctionProcess(
        "devplane",
        port,
        root,
        module="devplane.main:app",
        log_path=root / "devplane.log",
        env={
            **env,
            "DEVPLANE_EXTRA_VALUES": str(values),
            "DEVPLANE_URL": f"http://127.0.0.1:{port}",
            "DEVPLANE_WORKERS": str(args.workers),
            "DEVPLANE_QUEUE_CAPACITY": str(max(10_000, args.items)),
        },
    )
    processes = [echo, counter, devplane]
    try:
        for process in processes:
            process.start()
            process.wait_ready()
        asyncio.run(_post_all(echo.url + "/", min(1000, args.items), args.concurrency))  # warm-up
        direct = asyncio.run(_post_all(echo.url + "/", args.items, args.concurrency))
        assert devplane.process is not None
        cpu_before = _cpu_seconds(devplane.process.pid)
        broker = asyncio.run(_through_devplane(devplane, counter, args.items, args.concurrency))
        devplane_cpu = _cpu_seconds(devplane.process.pid) - cpu_before
    finally:
        for process in reversed(processes):
            process.stop()
    print(f"| path ({args.items} items, {args.concurrency} concurrent) | seconds | items/s |")
    print("|---|---:|---:|")
    print(f"| client -> echo (baseline) | {direct:.2f} | {args.items / direct:,.0f} |")
    print(
        f"| client -> devplane -> echo -> reply -> devplane -> counter | {broker:.2f} | "
        f"{args.items / broker:,.0f} |"
    )
    print(f"broker path / baseline time: {broker / direct:.2f}x")
    print(
        f"devplane CPU: {devplane_cpu:.2f} s for {args.items} items, "
        f"{devplane_cpu / args.items * 1e6:.0f} us per item (ingress + 2 deliveries + reply), "
        f"so one core carries ~{args.items / devplane_cpu:,.0f} items/s"
    )


if __name__ == "__main__":
    main()
