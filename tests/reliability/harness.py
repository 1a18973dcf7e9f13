"""What the reliability tests share: devplane with extra Triggers, steady traffic, polling.

Everything runs as real processes on loopback against the session's real MongoDB-protocol and
MinIO servers; each test stops, kills and restarts those servers or the processes themselves.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from devplane.servers import FunctionProcess, free_port

from tests.reliability.services import REPO

StartFunction = Callable[..., FunctionProcess]

# `make soak` (RELIABILITY_LONG=1) runs the long forms; CI runs a crash (SIGKILL) of each server,
# the harsher of the two faults, and leaves the graceful stop to the long run.
LONG = os.environ.get("RELIABILITY_LONG", "") not in ("", "0", "false")
FAULTS = ["kill", "stop"] if LONG else ["kill"]

# Generous: on a shared two-core machine a restart can take seconds. How soon things recover
# after a server's return is measured and reported, never asserted: a busy machine stretched
# it past a 30 s bound once in CI, with every event still delivered once.
SETTLE_SECONDS = 90.0


def delivery(retry: int = 12, delay: str = "PT0.25S", timeout: str = "PT5S") -> dict[str, Any]:
    """A delivery policy whose retries outlast an outage of several seconds (linear backoff)."""
    return {"retry": retry, "backoffPolicy": "linear", "backoffDelay": delay, "timeout": timeout}


def plane_values(
    path: Path,
    functions: dict[str, dict[str, Any]],
    *,
    dead_letter_url: str,
    policy: dict[str, Any] | None = None,
) -> Path:
    """An extra values file routing to `functions` ({name: {url, triggers}}), chart ones off."""
    values = {
        "eventing": {"delivery": {**(policy or delivery()), "deadLetterSink": "sink"}},
        "cronJobs": {"cleanup": {"enabled": False}},
        "functions": {**functions, "sink": {"url": dead_letter_url, "triggers": []}},
    }
    path.write_text(json.dumps(values))
    return path


def chart_values(
    path: Path, urls: dict[str, str], *, dead_letter_url: str, policy: dict[str, Any]
) -> Path:
    """An extra values file: the chart's own Triggers of the functions in `urls`, at those URLs.

    Every other chart function and every CronJob is off; `dead_letter_url` is the sink.
    """
    chart = yaml.safe_load((REPO / "charts/knative-playbook/values.yaml").read_text())
    functions: dict[str, Any] = {
        name: {"enabled": name in urls, "url": urls.get(name, "http://127.0.0.1:9")}
        for name in chart["functions"]
    }
    values = {
        "eventing": {"delivery": {**policy, "deadLetterSink": dead_letter_url}},
        "cronJobs": {name: {"enabled": False} for name in chart.get("cronJobs", {})},
        "functions": functions,
    }
    path.write_text(json.dumps(values))
    return path


def start_plane(
    start: StartFunction, env: dict[str, str], values: Path, **extra: str
) -> FunctionProcess:
    port = free_port()
    return start(
        "devplane.main:app",
        {
            **env,
            "DEVPLANE_EXTRA_VALUES": str(values),
            "DEVPLANE_CRON": "false",
            "DEVPLANE_URL": f"http://127.0.0.1:{port}",
            **extra,
        },
        name="devplane",
        port=port,
    )


def binary_headers(event_type: str, event_id: str | None = None, **ext: str) -> dict[str, str]:
    return {
        "ce-specversion": "1.0",
        "ce-id": event_id or uuid.uuid4().hex,
        "ce-type": event_type,
        "ce-source": "/tests/reliability",
        "content-type": "application/json",
        **{f"ce-{k}": v for k, v in ext.items()},
    }


@dataclass
class Outcomes:
    """What a stream of requests got back: acknowledged keys, refusals by status, latencies."""

    acked: list[str] = field(default_factory=list)
    refused: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    acked_at: list[float] = field(default_factory=list)  # monotonic clock, like `time_of`

    def add(self, key: str, status: int | None, seconds: float, ok: set[int]) -> None:
        self.latencies.append(seconds)
        if status is None:
            self.errors += 1
        elif status in ok:
            self.acked.append(key)
            self.acked_at.append(time.monotonic())
        else:
            self.refused[status] = self.refused.get(status, 0) + 1

    def first_ack_after(self, moment: float) -> float | None:
        """Seconds from `moment` (monotonic) to the first acknowledgement after it."""
        later = [at for at in self.acked_at if at >= moment]
        return min(later) - moment if later else None

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.refused.items() if status >= 500)


async def steady(
    send: Callable[[int], Awaitable[tuple[str, int | None]]],
    stop: asyncio.Event,
    ok: set[int],
    interval: float = 0.05,
) -> Outcomes:
    """Call `send(seq)` every `interval` until `stop`; a transport failure counts as no answer."""
    outcomes = Outcomes()
    seq = 0
    while not stop.is_set():
        began = time.monotonic()
        try:
            key, status = await send(seq)
        except httpx.HTTPError:
            key, status = f"#{seq}", None
        outcomes.add(key, status, time.monotonic() - began, ok)
        seq += 1
        await asyncio.sleep(max(0.0, interval - (time.monotonic() - began)))
    return outcomes


async def wait_until(
    probe: Callable[[], Awaitable[bool]], what: str, within: float = SETTLE_SECONDS
) -> float:
    """Poll until `probe()` holds; the seconds it took. Fails the test past `within`."""
    began = time.monotonic()
    while not await probe():
        if time.monotonic() - began > within:
            pytest.fail(f"{what}: not within {within}s")
        await asyncio.sleep(0.05)
    return time.monotonic() - began


async def status_of(client: httpx.AsyncClient, url: str) -> int | None:
    try:
        return (await client.get(url, timeout=2)).status_code
    except httpx.HTTPError:
        return None


async def event_outcomes(
    client: httpx.AsyncClient, plane_url: str, ids: list[str]
) -> dict[str, str]:
    """devplane's final outcome of each event's (single) delivery, from its event log."""
    outcomes: dict[str, str] = {}
    for event_id in ids:
        response = await client.get(f"{plane_url}/events", params={"id": event_id})
        events = response.json()["events"]
        deliveries = events[0]["deliveries"] if events else []
        outcomes[event_id] = deliveries[0]["outcome"] if deliveries else "missing"
    return outcomes


async def logged_events(client: httpx.AsyncClient, plane_url: str) -> list[dict[str, Any]]:
    """Every event in devplane's log (size it with DEVPLANE_EVENT_LOG_SIZE), newest first."""
    response = await client.get(f"{plane_url}/events", params={"limit": 10_000})
    response.raise_for_status()
    events: list[dict[str, Any]] = response.json()["events"]
    return events


async def kill_and_restart(process: FunctionProcess) -> float:
    """SIGKILL `process` and start it again at once; the seconds until it is ready again."""
    await asyncio.to_thread(process.stop, signal.SIGKILL)
    killed = time.monotonic()
    # As a container runtime restarts a crashed container: same port, same environment.
    await asyncio.to_thread(process.start)
    await asyncio.to_thread(process.wait_ready, 60)
    return time.monotonic() - killed


def report(name: str, figures: dict[str, Any]) -> None:
    """Print a figure line (`pytest -s` shows it; docs/reliability.md quotes them)."""
    print(f"\nRELIABILITY {name}: " + json.dumps(figures, default=str))


async def early_answer(url: str, method: str, headers: dict[str, str], body: bytes) -> int | None:
    """The status a server answers to a large request, as a careful HTTP client sees it.

    A server may refuse a too-large body from its Content-Length alone and close the
    connection; a client that insists on writing the whole body first then gets a reset
    instead of the answer. So: send the head, wait briefly for an early answer, and only then
    the body. None if no status line ever came back.
    """
    target = httpx.URL(url)
    reader, writer = await asyncio.open_connection(target.host, target.port)
    head = [f"{method} {target.raw_path.decode()} HTTP/1.1", f"host: {target.host}"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    head += [f"content-length: {len(body)}", "connection: close", "", ""]
    try:
        writer.write("\r\n".join(head).encode("latin-1"))
        await writer.drain()
        try:
            line = await asyncio.wait_for(reader.readline(), timeout=1.0)
        except TimeoutError:
            writer.write(body)
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), timeout=60.0)
    except (ConnectionError, TimeoutError):
        return None
    finally:
        writer.close()
    parts = line.split()
    return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None
