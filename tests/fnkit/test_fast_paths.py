"""fnkit's shortcuts past slow library paths give what the slow paths would have given."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from cloudevents.core.bindings.http import to_binary
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from dateutil.parser import isoparse
from fnkit.events import encode_binary, parse_event
from fnkit.logs import JsonFormatter, configure_logging, log_fields
from fnkit.tracing import TraceContext, current_trace

from tests.fnkit.helpers import REPO_ROOT

pytestmark = pytest.mark.unit

BASE = {"specversion": "1.0", "id": "evt-1", "source": "/tests/fnkit", "type": "t.v1"}


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"subject": 'uploads/a b"c%d.jpg', "time": datetime(2026, 1, 2, 3, 4, 5, 678, UTC)},
        {"subject": "photos/été/日本.png", "datacontenttype": "application/json"},
        {"time": datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-5, minutes=-30)))},
        {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "n1": "x\ty"},
    ],
)
def test_binary_encoding_has_the_sdks_headers_and_data(extra: dict[str, Any]) -> None:
    event = CloudEvent({**BASE, **extra}, {"text": "héllo", "n": [1, 2.5, None]})

    headers, body = encode_binary(event)
    sdk = to_binary(event, JSONFormat())

    assert dict(headers) == {k.lower().encode(): v.encode() for k, v in sdk.headers.items()}
    assert orjson.loads(body) == json.loads(sdk.body)


@pytest.mark.parametrize(
    "stamp",
    [
        "2026-01-02T03:04:05Z",
        "2026-01-02T03:04:05.678Z",
        "2026-01-02T03:04:05.123456789Z",
        "2026-01-02T03:04:05.1+01:00",
        "2026-01-02T03:04:05-05:30",
        "2026-01-02t03:04:05z",
    ],
)
def test_event_time_reads_as_dateutil_reads_it(stamp: str) -> None:
    headers = {f"ce-{k}": v for k, v in BASE.items()} | {"ce-time": stamp}

    read = parse_event(headers, b"").get_time()

    assert read is not None
    assert read == isoparse(stamp)
    assert read.utcoffset() == isoparse(stamp).utcoffset()


def test_invocation_line_written_directly_equals_the_formatted_record(
    capfd: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    fields = {"event_id": "evt-1", "type": "t.v1", "outcome": "ok", "status": 200}
    token = current_trace.set(TraceContext("4bf92f3577b34da6a3ce929d0e0e4736", "1" * 16))
    try:
        configure_logging("fast-path", "INFO")
        log_fields(logging.getLogger("fnkit"), logging.INFO, "invocation", fields)
        record = logging.getLogger("fnkit").makeRecord(
            "fnkit", logging.INFO, "", 0, "invocation", (), None, extra=fields
        )
        formatted = orjson.loads(JsonFormatter("fast-path").format(record))
    finally:
        current_trace.reset(token)
        root.handlers[:], level = saved
        root.setLevel(level)

    (line,) = [orjson.loads(x) for x in capfd.readouterr().out.splitlines()]
    assert line.pop("ts")[:10] == formatted.pop("ts")[:10]
    assert line == formatted
    assert line["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_a_function_without_rest_routes_serves_without_importing_fastapi() -> None:
    # In a process of its own: the test session itself has long imported FastAPI.
    script = textwrap.dedent(
        """
        import asyncio, sys
        import httpx
        from fnkit.echo import app

        async def main():
            inbox = asyncio.Queue()
            sent = []

            async def send(message):
                sent.append(message["type"])

            await inbox.put({"type": "lifespan.startup"})
            lifespan = asyncio.create_task(app({"type": "lifespan"}, inbox.get, send))
            while "lifespan.startup.complete" not in sent:
                await asyncio.sleep(0.01)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://fn") as client:
                while (await client.get("/health/readiness")).status_code != 200:
                    await asyncio.sleep(0.01)
                event = await client.post("/", content=b'{"a": 1}', headers={
                    "ce-specversion": "1.0", "ce-id": "1", "ce-source": "/t", "ce-type": "t",
                    "content-type": "application/json"})
                metrics = await client.get("/metrics")
                head = await client.head("/health/liveness")
            await inbox.put({"type": "lifespan.shutdown"})
            await lifespan
            print(sent[-1], event.status_code, event.json(), metrics.status_code, head.status_code,
                  "fnkit_invocations_total" in metrics.text, "fastapi" in sys.modules)

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={"ENVIRONMENT": "dev", "PATH": ""},
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    last = done.stdout.splitlines()[-1]
    assert last == "lifespan.shutdown.complete 200 {'a': 1} 200 200 True False"
