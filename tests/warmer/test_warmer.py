"""The warmer against real function processes, run as the CronJob runs it: `python -m warmer`."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from devplane.servers import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


async def run_warmer(env: dict[str, str]) -> tuple[int, list[dict[str, Any]]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "warmer",
        env={**os.environ, "ENVIRONMENT": "dev", **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    return process.returncode or 0, [json.loads(line) for line in out.splitlines()]


def lines(log: list[dict[str, Any]], msg: str) -> list[dict[str, Any]]:
    return [line for line in log if line["msg"] == msg]


async def test_every_target_answering_is_a_success_with_latencies(function_process: Any) -> None:
    targets = [function_process("fnkit.echo:app").url for _ in range(2)]

    code, log = await run_warmer({"WARMER_TARGETS": ",".join(targets)})

    assert code == 0
    pings = {p["target"]: p for p in lines(log, "ping")}
    assert set(pings) == set(targets)
    assert all(p["outcome"] == "ok" and p["status"] == 200 for p in pings.values())
    assert all(p["latency_ms"] > 0 for p in pings.values())
    [summary] = lines(log, "warmer finished")
    assert (summary["targets"], summary["succeeded"], summary["failed"]) == (2, 2, 0)
    assert set(summary["latency_ms_by_target"]) == set(targets)


async def test_a_down_or_unready_target_is_a_failure_and_fails_the_job(
    function_process: Any,
) -> None:
    up = function_process("fnkit.echo:app").url
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    # Alive but not ready: its MongoDB is unreachable, so readiness answers 503.
    unready = function_process(
        "tests.cleanup.recorder:app",
        env={"PYTHONPATH": str(ROOT), "MONGO_URL": "mongodb://127.0.0.1:9/"},
        ready=False,
    ).url

    code, log = await run_warmer({"WARMER_TARGETS": f"{up},{down},{unready}"})

    assert code == 1
    pings = {p["target"]: p for p in lines(log, "ping")}
    assert pings[up]["outcome"] == "ok"
    assert pings[down]["outcome"] == "failed"
    assert pings[down]["status"] is None and "Connect" in pings[down]["error"]
    assert (pings[unready]["outcome"], pings[unready]["status"]) == ("failed", 503)
    [summary] = lines(log, "warmer finished")
    assert (summary["succeeded"], summary["failed"]) == (1, 2)
    assert sorted(summary["failed_targets"]) == sorted([down, unready])
    assert summary["level"] == "error"


async def test_targets_are_pinged_at_once_not_one_after_another() -> None:
    # Each target answers only once every target has been asked: pings made one at a time
    # would each wait for the next, time out, and fail.
    count = 3
    arrived = 0
    everyone = asyncio.Event()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal arrived
        await reader.readuntil(b"\r\n\r\n")
        arrived += 1
        if arrived == count:
            everyone.set()
        await everyone.wait()
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    servers = [await asyncio.start_server(answer, "127.0.0.1", 0) for _ in range(count)]
    targets = [f"http://127.0.0.1:{s.sockets[0].getsockname()[1]}" for s in servers]
    try:
        code, log = await run_warmer(
            {"WARMER_TARGETS": ",".join(targets), "WARMER_TIMEOUT_SECONDS": "20"}
        )
    finally:
        for server in servers:
            server.close()

    assert code == 0, lines(log, "ping")
    assert arrived == count


async def test_nothing_to_ping_is_a_settings_error() -> None:
    code, log = await run_warmer({"WARMER_TARGETS": ""})

    assert code == 2
    assert "WARMER_TARGETS is empty" in log[-1]["msg"]


async def test_a_target_that_is_not_a_url_is_refused() -> None:
    code, log = await run_warmer({"WARMER_TARGETS": "products-api"})

    assert code == 2
    assert "http:// or https://" in log[-1]["error"]
