"""Fixtures of dead-letter's tests: a stand-in broker and the service in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from devplane.servers import MongoServer

from tests.dead_letter.helpers import Broker, Served, serve, settings_for


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    async with Broker() as server:
        yield server


@pytest.fixture
def mongo_env(mongo_server: MongoServer, mongo_db_name: str) -> dict[str, str]:
    """Like `service_env`, without starting MinIO, which dead-letter does not use."""
    return {
        "ENVIRONMENT": "dev",
        "MONGO_URL": mongo_server.url,
        "MONGO_DB": mongo_db_name,
        "MONGO_TIMEOUT_SECONDS": "2",
    }


@pytest.fixture
async def service(mongo_env: dict[str, str], broker: Broker) -> AsyncIterator[Served]:
    """dead-letter on the test MongoDB (a database of its own), emitting to `broker`."""
    async with serve(settings_for(mongo_env, k_sink=broker.url)) as served:
        yield served
