"""orders-api fixtures: the app in-process on the real MongoDB server, and a real event sink."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from devplane.servers import MongoServer
from fnkit import Function
from orders_api.core.config import Settings
from orders_api.main import create_app
from orders_api.store import OrderStore

from tests.products_api.helpers import EventSink, wait_for


class Api:
    """The app under test, its HTTP client, and its store."""

    def __init__(self, fn: Function[Settings], client: httpx.AsyncClient) -> None:
        self.fn = fn
        self.client = client

    @property
    def store(self) -> OrderStore:
        store: OrderStore = self.fn.api.state.orders
        return store


@pytest.fixture
async def sink() -> AsyncIterator[EventSink]:
    """The broker, down until the test starts it."""
    server = EventSink()
    yield server
    await server.stop()


ApiFactory = Callable[..., AbstractAsyncContextManager[Api]]


@pytest.fixture
def make_api(mongo_server: MongoServer, mongo_db_name: str, sink: EventSink) -> ApiFactory:
    """`async with make_api(**settings) as api`: the app on the test's database."""

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[Api]:
        settings = Settings(
            **{
                "environment": "dev",
                "mongo_url": mongo_server.url,
                "mongo_db": mongo_db_name,
                "mongo_timeout_seconds": 1.0,
                "k_sink": sink.url,
                "emit_attempts": 1,
                "outbox_sweep_interval_seconds": 3600,
                "outbox_grace_seconds": 0,
                **overrides,
            }
        )
        fn = create_app(settings)
        async with fn.api.router.lifespan_context(fn.api):
            transport = httpx.ASGITransport(app=fn, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                await wait_for(lambda: _ready(client), "the app to become ready")
                yield Api(fn, client)

    return start


@pytest.fixture
async def api(make_api: ApiFactory) -> AsyncIterator[Api]:
    async with make_api() as started:
        yield started


async def _ready(client: httpx.AsyncClient) -> bool:
    return (await client.get("/health/readiness")).status_code == 200
