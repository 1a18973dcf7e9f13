"""Functions as real processes (`python -m fnkit.serve module:app`): logs, metrics, SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from devplane.servers import FunctionProcess, ServerUnavailable

from tests.fnkit.helpers import binary_event, metric, parse_metrics, trace_parts
from tests.fnkit.sample_functions import PINGED, RECEIPTED, RECORDED, SLEPT, WOKE

pytestmark = pytest.mark.e2e

SAMPLE = "tests.fnkit.sample_functions:app"
TRACE_ID = "7e3f0b9c2d614a58b1c0de2f3a4b5c6d"
StartFunction = Callable[..., FunctionProcess]


def log_lines(proc: FunctionProcess) -> list[dict[str, Any]]:
    """The process's JSON log lines (anything else it printed is skipped)."""
    assert proc.log_path is not None
    lines = []
    for raw in proc.log_path.read_text().splitlines():
        if raw.startswith("{"):
            lines.append(orjson.loads(raw))
    return lines


async def wait_for_log(proc: FunctionProcess, msg: str, within: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = [line for line in log_lines(proc) if line["msg"] == msg]
        if found:
            return found[0]
        await asyncio.sleep(0.05)
    pytest.fail(f"no {msg!r} in the log after {within}s:\n{proc.log_tail()}")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=60) as http:
        yield http


async def test_sigterm_lets_the_in_flight_event_finish(
    function_process: StartFunction, repo_pythonpath: dict[str, str], client: httpx.AsyncClient
) -> None:
    proc = function_process(SAMPLE, env=repo_pythonpath, name="sample-drain")
    headers, body = binary_event(SLEPT, {"seconds": 1.5}, id="evt-slow")
    request = asyncio.create_task(client.post(proc.url, headers=headers, content=body))
    await wait_for_log(proc, "slow handler started")
    popen = proc.process
    assert popen is not None

    await asyncio.to_thread(proc.stop, signal.SIGTERM)
    response = await request

    assert response.status_code == 200
    assert response.headers["ce-type"] == WOKE
    assert response.headers["ce-subject"] == "evt-slow"
    assert response.json() == {"slept": 1.5}
    assert popen.returncode == 0
    messages = [line["msg"] for line in log_lines(proc)]
    assert messages.index("slow handler started") < messages.index("invocation")
    assert messages.index("invocation") < messages.index("stopped")


async def test_event_still_running_when_the_grace_is_over_gets_503(
    function_process: StartFunction, repo_pythonpath: dict[str, str], client: httpx.AsyncClient
) -> None:
    env = {**repo_pythonpath, "SHUTDOWN_GRACE_SECONDS": "1"}
    proc = function_process(SAMPLE, env=env, name="sample-grace")
    headers, body = binary_event(SLEPT, {"seconds": 120}, id="evt-stuck")
    request = asyncio.create_task(client.post(proc.url, headers=headers, content=body))
    await wait_for_log(proc, "slow handler started")
    popen = proc.process
    assert popen is not None

    await asyncio.to_thread(proc.stop, signal.SIGTERM)
    response = await request

    assert response.status_code == 503  # so the broker delivers it again
    assert response.json()["error"]["code"] == "cancelled"
    assert popen.returncode == 0
    invocation = next(line for line in log_lines(proc) if line["msg"] == "invocation")
    assert invocation["event_id"] == "evt-stuck"
    assert (invocation["outcome"], invocation["status"]) == ("cancelled", 503)
    messages = [line["msg"] for line in log_lines(proc)]
    assert messages.index("invocation") < messages.index("stopped")


async def test_each_invocation_prints_one_json_line(
    function_process: StartFunction, client: httpx.AsyncClient
) -> None:
    proc = function_process("fnkit.echo:app", name="echo-logs")
    traceparent = f"00-{TRACE_ID}-a1b2c3d4e5f60718-01"
    for event_id in ("evt-a", "evt-b"):
        headers, body = binary_event(
            "io.example.anything.v1",
            {"id": event_id},
            id=event_id,
            source="/proc/test",
            ce_traceparent=traceparent,
        )
        response = await client.post(proc.url, headers=headers, content=body)
        assert response.status_code == 200
        assert trace_parts(response.headers["ce-traceparent"])[0] == TRACE_ID
    await client.get(f"{proc.url}/metrics")  # not an invocation: no line

    invocations = [line for line in log_lines(proc) if line["msg"] == "invocation"]

    assert [line["event_id"] for line in invocations] == ["evt-a", "evt-b"]
    for line in invocations:
        assert line["function"] == "echo"
        assert line["type"] == "io.example.anything.v1"
        assert line["source"] == "/proc/test"
        assert line["outcome"] == "ok"
        assert line["status"] == 200
        assert line["trace_id"] == TRACE_ID
        assert line["duration_ms"] > 0
    assert [line.get("cold_start") for line in invocations] == [True, None]


async def test_cold_start_metrics_of_a_real_process(
    function_process: StartFunction, client: httpx.AsyncClient
) -> None:
    proc = function_process("fnkit.echo:app", name="echo-metrics")
    before = parse_metrics((await client.get(f"{proc.url}/metrics")).text)
    headers, body = binary_event(PINGED, {})
    await client.post(proc.url, headers=headers, content=body)
    once = parse_metrics((await client.get(f"{proc.url}/metrics")).text)
    await client.post(proc.url, headers=headers, content=body)
    twice = parse_metrics((await client.get(f"{proc.url}/metrics")).text)

    startup = metric(before, "fnkit_startup_seconds", function="echo")
    assert startup is not None and startup > 0
    samples = (before, once, twice)
    cold_starts = [metric(m, "fnkit_cold_starts_total", function="echo") for m in samples]
    assert cold_starts == [0, 1, 1]
    assert (
        metric(twice, "fnkit_invocations_total", function="echo", type="fallback", outcome="ok")
        == 2
    )
    rss = metric(twice, "process_resident_memory_bytes")
    assert rss is not None and rss > 1_000_000


@pytest.mark.parametrize("declared", [True, False])
async def test_body_over_the_limit_is_413_from_a_real_server(
    function_process: StartFunction, client: httpx.AsyncClient, declared: bool
) -> None:
    proc = function_process("fnkit.echo:app", env={"MAX_EVENT_BYTES": "1000"}, name="echo-413")
    headers, body = binary_event(PINGED, {"blob": "x" * 5000})

    async def one_chunk() -> AsyncIterator[bytes]:
        yield body

    content: Any = body if declared else one_chunk()
    response = await client.post(proc.url, headers=headers, content=content)

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_placeholder_secrets_stop_a_production_process(
    function_process: StartFunction, repo_pythonpath: dict[str, str], tmp_path: Path
) -> None:
    env = {**repo_pythonpath, "ENVIRONMENT": "production"}

    with pytest.raises(ServerUnavailable) as refused:
        function_process("tests.fnkit.sample_functions:minio_app", env=env, name="refuses")

    assert "exited with 3" in str(refused.value)
    assert (
        "refusing to start with development placeholder secrets in "
        "MINIO_ACCESS_KEY/MINIO_SECRET_KEY (ENVIRONMENT=production)" in str(refused.value)
    )


async def test_routes_and_events_in_one_real_process(
    function_process: StartFunction,
    repo_pythonpath: dict[str, str],
    service_env: dict[str, str],
    client: httpx.AsyncClient,
) -> None:
    env = {**service_env, **repo_pythonpath}
    proc = function_process("tests.fnkit.sample_functions:routes_app", env=env, name="routes")
    created = await client.post(f"{proc.url}/records", json={"key": "by-route"})
    headers, body = binary_event(RECORDED, {"key": "by-event"}, id="evt-r")
    event = await client.post(proc.url, headers=headers, content=body)
    again = await client.post(proc.url, headers=headers, content=body)
    fetched = await client.get(f"{proc.url}/records/by-event")
    missing = await client.get(f"{proc.url}/records/nothing")
    ready = await client.get(f"{proc.url}/health/readiness")
    popen = proc.process
    assert popen is not None

    await asyncio.to_thread(proc.stop, signal.SIGTERM)

    assert created.status_code == 201
    assert event.status_code == 200
    assert event.headers["ce-type"] == RECEIPTED
    assert again.json() == event.json()
    assert fetched.json()["receipt"] == event.json()["receipt"]
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert ready.json() == {"status": "ready", "checks": {"setup": "ok", "mongodb": "ok"}}
    assert popen.returncode == 0
    outcomes = [line["outcome"] for line in log_lines(proc) if line["msg"] == "invocation"]
    assert outcomes == ["ok", "duplicate"]
    assert "stopped" in [line["msg"] for line in log_lines(proc)]
