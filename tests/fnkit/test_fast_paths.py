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
from cloudevents.core.bindings.http import HTTPMessage, from_binary, to_binary
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from dateutil.parser import isoparse
from fnkit.errors import BadEvent
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


@pytest.mark.parametrize(
    "fields",
    [
        {"event_id": "evt-1", "type": "t.v1", "outcome": "ok", "status": 200},
        {},
        {"level": "a field named like a standard one", "status": 500},
        {"when": datetime(2026, 1, 2, tzinfo=UTC), "error": 'quote " and \u00e9'},
    ],
)
@pytest.mark.parametrize("traced", [True, False])
def test_invocation_line_written_directly_equals_the_formatted_record(
    capfd: pytest.CaptureFixture[str], fields: dict[str, Any], traced: bool
) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    trace = TraceContext("4bf92f3577b34da6a3ce929d0e0e4736", "1" * 16) if traced else None
    token = current_trace.set(trace)
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
    assert list(line.items()) == list(formatted.items())  # same fields, in the same order
    assert ("trace_id" in line) is traced


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


def test_rest_routes_are_built_on_the_first_rest_request_not_before_the_first_event() -> None:
    # In a process of its own: the test session itself has long imported FastAPI.
    script = textwrap.dedent(
        """
        import asyncio, sys
        import httpx
        from fnkit import Function

        fn = Function("lazy-rest")

        @fn.on("t")
        async def handle(event, ctx):
            return None

        @fn.on_startup
        async def open_store(ctx):
            fn.state.greeting = "made at start-up"

        @fn.rest
        def routes(api):
            from fastapi import APIRouter, Request

            router = APIRouter()

            @router.get("/greeting")
            async def greeting(request: Request) -> dict[str, str]:
                return {"greeting": request.app.state.greeting}

            api.include_router(router)

        async def main():
            inbox = asyncio.Queue()
            sent = []

            async def send(message):
                sent.append(message["type"])

            await inbox.put({"type": "lifespan.startup"})
            lifespan = asyncio.create_task(fn({"type": "lifespan"}, inbox.get, send))
            while "lifespan.startup.complete" not in sent:
                await asyncio.sleep(0.01)
            transport = httpx.ASGITransport(app=fn)
            async with httpx.AsyncClient(transport=transport, base_url="http://fn") as client:
                while (await client.get("/health/readiness")).status_code != 200:
                    await asyncio.sleep(0.01)
                event = await client.post("/", content=b"{}", headers={
                    "ce-specversion": "1.0", "ce-id": "1", "ce-source": "/t", "ce-type": "t",
                    "content-type": "application/json"})
                before = "fastapi" in sys.modules
                route = await client.get("/greeting")
                spec = await client.get("/openapi.json")
            await inbox.put({"type": "lifespan.shutdown"})
            await lifespan
            print(event.status_code, before, route.status_code, route.json()["greeting"],
                  sorted(spec.json()["paths"]))

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
    assert last == (
        "204 False 200 made at start-up "
        "['/greeting', '/health/liveness', '/health/readiness', '/metrics']"
    )


def _sdk_from_binary(headers: dict[str, str], body: bytes) -> CloudEvent:
    return from_binary(HTTPMessage(headers=headers, body=body), JSONFormat(), CloudEvent)  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("extra", "body"),
    [
        ({"content-type": "application/json"}, '{"a": [1, "\u00e9"]}'.encode()),
        ({"content-type": "application/json; charset=utf-8"}, b"[1, 2]"),
        ({"content-type": "text/plain"}, "h\u00e9llo".encode()),
        ({}, b""),
        ({"ce-datacontenttype": "text/plain"}, b"plain"),
        ({"ce-subject": "uploads/a%20b%22c%25d.jpg", "ce-time": "2026-01-02T03:04:05.678Z"}, b""),
        (
            {
                "ce-subject": "photos/%C3%A9t%C3%A9/%E6%97%A5.png",
                "ce-time": "2026-01-02T03:04:05-05:30",
            },
            b"",
        ),
        ({"ce-traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, b""),
        ({"ce-knativearrivaltime": "2026-01-02T03:04:05.912Z", "ce-partitionkey": "k%2F1"}, b""),
        ({"ce-dataschema": "https://example.com/s.json", "content-type": "text/csv"}, b"a,b"),
    ],
)
def test_binary_event_is_the_event_the_sdks_from_binary_reads(
    extra: dict[str, str], body: bytes
) -> None:
    headers = {f"ce-{k}": v for k, v in BASE.items()} | extra

    ours = parse_event(headers, body)
    sdk = _sdk_from_binary(headers, body)

    def items(event: CloudEvent) -> list[tuple[str, Any]]:
        # A time filled in (the event had none) is the moment each was read: compare its place.
        filled = "ce-time" not in headers
        return [
            (k, "filled in" if k == "time" and filled else v)
            for k, v in event.get_attributes().items()
        ]

    assert type(ours) is CloudEvent
    assert items(ours) == items(sdk)
    assert ours.get_data() == sdk.get_data()


def test_binary_event_without_time_gets_one_as_the_sdk_gives_it() -> None:
    headers = {f"ce-{k}": v for k, v in BASE.items()}

    for _ in range(2):  # the second time, past the SDK's validation of this shape
        before = datetime.now(UTC)
        time = parse_event(headers, b"").get_time()
        assert time is not None and before <= time <= datetime.now(UTC)


VALID = {**BASE, "time": datetime(2026, 1, 2, tzinfo=UTC), "subject": "s", "ext1": "x"}


@pytest.mark.parametrize(
    "change",
    [
        {"subject": ""},
        {"subject": 5},
        {"type": ""},
        {"source": None},
        {"id": 17},
        {"specversion": "0.3"},
        {"time": datetime(2026, 1, 2)},
        {"time": "2026-01-02T00:00:00Z"},
        {"datacontenttype": ""},
        {"ext1": ""},  # extension values are not checked: valid
        {"ext1": 12},
    ],
)
def test_the_sdk_judges_every_event_of_a_shape_it_has_accepted(change: dict[str, Any]) -> None:
    from cloudevents.core.exceptions import CloudEventValidationError
    from fnkit.events import _event

    _event(dict(VALID), None)  # this shape of attributes is now known to the SDK as valid
    attributes = {**VALID, **change}

    try:
        CloudEvent(dict(attributes), None)
    except CloudEventValidationError as exc:
        sdk_errors = {name: [str(e) for e in errors] for name, errors in exc.errors.items()}
    else:
        sdk_errors = {}
    for _ in range(2):
        if sdk_errors:
            with pytest.raises(CloudEventValidationError) as raised:
                _event(dict(attributes), None)
            assert {k: [str(e) for e in v] for k, v in raised.value.errors.items()} == sdk_errors
        else:
            assert _event(dict(attributes), None).get_attributes() == attributes


@pytest.mark.parametrize("name", ["data", "bad_name", "UPPER", ""])
def test_an_invalid_extension_name_is_refused_every_time(name: str) -> None:
    headers = {f"ce-{k}": v for k, v in BASE.items()} | {f"ce-{name}": "x"}

    for _ in range(2):
        with pytest.raises(BadEvent, match="invalid CloudEvent attribute"):
            parse_event(headers, b"")
