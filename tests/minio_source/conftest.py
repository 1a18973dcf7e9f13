"""minio-source's fixtures: a real HTTP sink standing in for the broker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fnkit.helpers import Sink


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    async with Sink() as server:
        yield server
