"""products-api fixtures: the app in-process on the real MongoDB server, and a real event sink."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import pytest
from devplane.servers import MongoServer
from products_api.core.config import Settings
from products_api.main import create_app

from tests.products_api.helpers import Api
from tests.support.apps import app_starter, outbox_app_settings
from tests.support.sinks import EventSink


@pytest.fixture
async def sink() -> AsyncIterator[EventSink]:
    """The broker, down until the test starts it."""
    server = EventSink()
    yield server
    await server.stop()


ApiFactory = Callable[..., AbstractAsyncContextManager[Api]]


@pytest.fixture
def make_api(mongo_server: MongoServer, mongo_db_name: str, sink: EventSink) -> ApiFactory:
    """`async with make_api(**settings) as api`: the app on the test's database and `sink`."""
    return app_starter(
        create_app,
        lambda values: Settings(**values),
        Api,
        outbox_app_settings(mongo_server.url, mongo_db_name, sink.url),
        base_url="http://products-api",
    )


@pytest.fixture
async def api(make_api: ApiFactory) -> AsyncIterator[Api]:
    async with make_api() as started:
        yield started
