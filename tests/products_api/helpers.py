"""Helpers for the products-api tests: a real event sink, the app under test, polling."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import uvicorn
from devplane.servers import free_port
from fnkit import CloudEvent, Function
from fnkit.events import parse_event
from products_api.core.config import Settings
from products_api.store import ProductStore

PRODUCT: dict[str, Any] = {
    "sku": "SHOE-RED-42",
    "name": "Red running shoe",
    "description": "Lightweight, size 42.",
    "price": "89.90",
    "currency": "EUR",
    "stock": 12,
    "tags": ["shoes", "running"],
}


WAIT_SECONDS = 20.0


class EventSink:
    """A real HTTP server on a fixed port that records the CloudEvents posted to it (K_SINK).

    It can be stopped and started again on the same port, to play a broker that goes down, and
    told to answer with an error status while still recording what arrives.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.events: list[CloudEvent] = []
        self.status = 202
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        self.events.append(parse_event(headers, body))
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def start(self) -> None:
        config = uvicorn.Config(
            self._app,
            host="127.0.0.1",
            port=self.port,
            log_level="error",
            lifespan="off",
            interface="asgi3",
        )
        self._server = server = uvicorn.Server(config)
        self._task = asyncio.create_task(server.serve())
        await wait_for(_true_when(lambda: server.started), "the event sink to listen")

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
            self._server = self._task = None

    def ids(self, event_type: str | None = None) -> list[str]:
        return [e.get_id() for e in self.events if event_type in (None, e.get_type())]


class Api:
    """The app under test, its HTTP client, and its store."""

    def __init__(self, fn: Function[Settings], client: httpx.AsyncClient) -> None:
        self.fn = fn
        self.client = client

    @property
    def store(self) -> ProductStore:
        store: ProductStore = self.fn.api.state.products
        return store

    async def create(self, **fields: Any) -> dict[str, Any]:
        response = await self.client.post("/products", json={**PRODUCT, **fields})
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created


async def wait_for(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll `condition` until it holds; fail naming `what` when it never does."""
    try:
        async with asyncio.timeout(WAIT_SECONDS):
            while True:
                if await condition():
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"timed out after {WAIT_SECONDS}s waiting for {what}")


def _true_when(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def condition() -> bool:
        return check()

    return condition
