"""orders-api fixtures: the app in-process on the real MongoDB server, and a real event sink."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import httpx
import pytest
from devplane.servers import MongoServer
from fnkit import Function
from orders_api.core.config import Settings
from orders_api.main import create_app
from orders_api.store import OrderStore

from tests.support.apps import app_starter, outbox_app_settings
from tests.support.sinks import EventSink


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
    return app_starter(
        create_app,
        lambda values: Settings(**values),
        Api,
        outbox_app_settings(mongo_server.url, mongo_db_name, sink.url),
        base_url="http://orders-api",
    )


@pytest.fixture
async def api(make_api: ApiFactory) -> AsyncIterator[Api]:
    async with make_api() as started:
        yield started
