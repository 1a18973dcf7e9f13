"""Helpers for dead-letter's tests: the service in-process, dead letters, a stand-in broker."""

from __future__ import annotations

import asyncio
import base64
import inspect
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
from dead_letter.config import Settings
from dead_letter.main import create_app
from fnkit import Function
from prometheus_client.parser import text_string_to_metric_families

from tests.support.apps import serve_in_process
from tests.support.sinks import Request, StreamServer

SOURCE = "/tests/dead-letter"
FAILED_AT = "http://item-processor.playbook.svc.cluster.local/"
ITEM_REQUESTED = "io.knative-playbook.item.requested.v1"
ITEM_FAILED = "io.knative-playbook.item.failed.v1"


def knative_error(
    destination: str | None = FAILED_AT, code: int | None = 503, body: bytes | None = b"down"
) -> dict[str, str]:
    """The three extensions as Knative's dispatcher sets them (body base64, cut at 1024)."""
    attributes = {}
    if destination is not None:
        attributes["knativeerrordest"] = destination
    if code is not None:
        attributes["knativeerrorcode"] = str(code)
    if body is not None:
        attributes["knativeerrordata"] = base64.b64encode(body).decode()[:1024]
    return attributes


def binary_dead_letter(
    body: bytes,
    *,
    type: str = "io.knative-playbook.product.created.v1",
    id: str | None = None,
    source: str = SOURCE,
    content_type: str | None = "application/json",
    error: dict[str, str] | None = None,
    **extensions: str,
) -> tuple[dict[str, str], bytes]:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": id or uuid.uuid4().hex,
        "ce-source": source,
        "ce-type": type,
        **{
            f"ce-{name}": value
            for name, value in (knative_error() if error is None else error).items()
        },
        **{f"ce-{name}": value for name, value in extensions.items()},
    }
    if content_type is not None:
        headers["content-type"] = content_type
    return headers, body


def structured_dead_letter(
    *,
    type: str = "io.knative-playbook.product.created.v1",
    id: str | None = None,
    source: str = SOURCE,
    error: dict[str, Any] | None = None,
    **members: Any,
) -> tuple[dict[str, str], bytes]:
    envelope = {
        "specversion": "1.0",
        "id": id or uuid.uuid4().hex,
        "source": source,
        "type": type,
        **(knative_error() if error is None else error),
        **members,
    }
    return {"content-type": "application/cloudevents+json"}, orjson.dumps(envelope)


@dataclass
class Broker(StreamServer):
    """The broker's ingress: records requests, accepts them or refuses them with `status`."""

    status: int = 202
    requests: list[Request] = field(default_factory=list)
    accepted: list[Request] = field(default_factory=list)

    def accepted_of_type(self, event_type: str) -> list[Request]:
        return [r for r in self.accepted if r.headers.get("ce-type") == event_type]

    def reply(self, request: Request) -> bytes:
        self.requests.append(request)
        if self.status < 300:
            self.accepted.append(request)
        reply = b"broker says no" if self.status >= 300 else b""
        return (
            f"HTTP/1.1 {self.status} X\r\ncontent-length: {len(reply)}\r\n"
            "connection: close\r\n\r\n".encode()
            + reply
        )


def closed_port_url() -> str:
    """A URL where nothing listens: a broker that is down."""
    from devplane.servers import free_port

    return f"http://127.0.0.1:{free_port()}/"


@dataclass
class Served:
    fn: Function[Settings]
    client: httpx.AsyncClient

    async def post(self, message: tuple[dict[str, str], bytes]) -> httpx.Response:
        headers, body = message
        return await self.client.post("/", headers=headers, content=body)

    async def stored(self, message: tuple[dict[str, str], bytes]) -> str:
        """Post a dead letter; return its id (found by its event id)."""
        response = await self.post(message)
        assert response.status_code == 204, response.text
        headers, body = message
        event_id = headers.get("ce-id") or orjson.loads(body)["id"]
        return await self.id_of(event_id)

    async def id_of(self, event_id: str) -> str:
        page = (await self.client.get("/dead-letters", params={"limit": 500})).json()
        ids = [item["id"] for item in page["items"] if item["event_id"] == event_id]
        assert len(ids) == 1, page
        return str(ids[0])

    async def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        samples = {}
        for family in text_string_to_metric_families((await self.client.get("/metrics")).text):
            for sample in family.samples:
                samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return samples


def settings_for(env: dict[str, str], **overrides: Any) -> Settings:
    values: dict[str, Any] = {key.lower(): value for key, value in env.items()}
    values.update(sweep_interval_seconds=0.2, fanin_retry_seconds=0.2, emit_attempts=1)
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[Served]:
    """The service in this process: lifespan entered (ASGITransport does not), ready."""
    fn = create_app(settings)
    async with serve_in_process(
        fn, base_url="http://dead-letter", raise_app_exceptions=True
    ) as client:
        yield Served(fn, client)


async def eventually(check: Any, within: float = 20.0) -> None:
    """Wait until `check()` (plain or async) is true, failing after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        await asyncio.sleep(0.05)
