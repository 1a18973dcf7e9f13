"""Helpers for fnkit's tests: serving an app in-process, events, metrics, a real event sink."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fnkit import Function
from fnkit.logs import JsonFormatter
from prometheus_client.parser import text_string_to_metric_families

from tests.fnkit.sample_functions import SampleSettings
from tests.support.sinks import Request, StreamServer

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE = "/tests/fnkit"


class JsonLines(logging.Handler):
    """Keeps every log record as the JSON object fnkit would print for it."""

    def __init__(self, function: str) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter(function))
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        # Formatted now, not later: the trace id comes from the context of the log call.
        self.lines.append(orjson.loads(self.format(record)))

    def named(self, msg: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["msg"] == msg]


@dataclass
class Served:
    """An app running in this process: its lifespan entered, a client, its log lines."""

    fn: Function[Any]
    client: httpx.AsyncClient
    logs: JsonLines

    async def send(self, headers: dict[str, str], body: bytes = b"") -> httpx.Response:
        return await self.client.post("/", headers=headers, content=body)

    async def binary(self, event_type: str, data: Any = None, **kwargs: Any) -> httpx.Response:
        headers, body = binary_event(event_type, data, **kwargs)
        return await self.send(headers, body)

    async def structured(self, event_type: str, data: Any = None, **kw: Any) -> httpx.Response:
        headers, body = structured_event(event_type, data, **kw)
        return await self.send(headers, body)

    async def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        response = await self.client.get("/metrics")
        assert response.status_code == 200
        return parse_metrics(response.text)

    async def wait_ready(self, within: float = 60.0) -> dict[str, Any]:
        """Poll readiness until it answers 200; fail with its last answer otherwise."""
        deadline = time.monotonic() + within
        while True:
            response = await self.client.get("/health/readiness")
            if response.status_code == 200:
                body: dict[str, Any] = response.json()
                return body
            if time.monotonic() > deadline:
                pytest.fail(f"not ready after {within}s: {response.text}")
            await asyncio.sleep(0.02)

    async def wait_for_log(self, msg: str, within: float = 60.0) -> list[dict[str, Any]]:
        """Wait until the function has logged `msg`; returns those lines."""
        deadline = time.monotonic() + within
        while not self.logs.named(msg):
            if time.monotonic() > deadline:
                pytest.fail(f"no {msg!r} log line after {within}s: {self.logs.lines}")
            await asyncio.sleep(0.02)
        return self.logs.named(msg)


@asynccontextmanager
async def serve(fn: Function[Any], *, ready: bool = True) -> AsyncIterator[Served]:
    """Run `fn` in-process: lifespan entered (ASGITransport does not run it), client bound."""
    logs = JsonLines(fn.name)
    root = logging.getLogger()
    try:
        async with fn.api.router.lifespan_context(fn.api):
            root.addHandler(logs)  # after start-up, which installs fnkit's own handler
            transport = httpx.ASGITransport(app=fn)
            async with httpx.AsyncClient(transport=transport, base_url="http://fn") as client:
                served = Served(fn, client, logs)
                if ready:
                    await served.wait_ready()
                yield served
    finally:
        root.removeHandler(logs)


def unique_name(prefix: str = "t") -> str:
    """A function name of its own, so each test's metrics start from nothing."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def settings_from(env: dict[str, str], **overrides: Any) -> SampleSettings:
    values: dict[str, Any] = {key.lower(): value for key, value in env.items()}
    values.update(overrides)
    return SampleSettings(**values)


def binary_event(
    event_type: str,
    data: Any = None,
    *,
    id: str | None = None,
    source: str = SOURCE,
    content_type: str = "application/json",
    **extra_headers: str,
) -> tuple[dict[str, str], bytes]:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": id or uuid.uuid4().hex,
        "ce-source": source,
        "ce-type": event_type,
        "content-type": content_type,
        **{name.replace("_", "-"): value for name, value in extra_headers.items()},
    }
    body = data if isinstance(data, bytes) else b"" if data is None else orjson.dumps(data)
    return headers, body


def structured_event(
    event_type: str,
    data: Any = None,
    *,
    id: str | None = None,
    source: str = SOURCE,
    headers: dict[str, str] | None = None,
    **attributes: Any,
) -> tuple[dict[str, str], bytes]:
    envelope: dict[str, Any] = {
        "specversion": "1.0",
        "id": id or uuid.uuid4().hex,
        "source": source,
        "type": event_type,
        "datacontenttype": "application/json",
        **attributes,
    }
    if data is not None:
        envelope["data"] = data
    return (
        {"content-type": "application/cloudevents+json", **(headers or {})},
        orjson.dumps(envelope),
    )


MetricKey = tuple[str, frozenset[tuple[str, str]]]


def parse_metrics(text: str) -> dict[MetricKey, float]:
    samples: dict[MetricKey, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def metric(samples: dict[MetricKey, float], name: str, **labels: str) -> float | None:
    """One sample's value, or None when the series is not exported."""
    return samples.get((name, frozenset(labels.items())))


def trace_parts(traceparent: str) -> tuple[str, str]:
    """(trace id, span id) of a W3C traceparent."""
    version, trace_id, span_id, flags = traceparent.split("-")
    assert (version, len(trace_id), len(span_id), len(flags)) == ("00", 32, 16, 2)
    return trace_id, span_id


@dataclass
class Sink(StreamServer):
    """The broker's ingress answering by `script`, then 202; records every attempt."""

    # An entry is a status code, or "drop" to close the connection without answering.
    script: list[int | str] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)

    def reply(self, request: Request) -> bytes | None:
        self.requests.append(request)
        action = self.script.pop(0) if self.script else 202
        if action == "drop":
            return None
        reply = b'{"sink": "answer"}'
        return (
            f"HTTP/1.1 {action} Sink\r\ncontent-type: application/json\r\n"
            f"content-length: {len(reply)}\r\nconnection: close\r\n\r\n".encode()
            + reply
        )
