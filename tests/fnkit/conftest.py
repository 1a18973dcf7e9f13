"""Fixtures of fnkit's tests: sample apps, a real event sink, a path for function processes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fnkit import Function

from tests.fnkit.helpers import REPO_ROOT, Sink, settings_from, unique_name
from tests.fnkit.sample_functions import SampleSettings, create_app


@pytest.fixture
def plain_app() -> Function[SampleSettings]:
    """The sample function without MongoDB or MinIO."""
    return create_app(unique_name(), SampleSettings(environment="dev"))


@pytest.fixture
def mongo_app(service_env: dict[str, str]) -> Function[SampleSettings]:
    """The sample function with MongoDB (its own database) and REST routes."""
    return create_app(unique_name(), settings_from(service_env), mongo=True)


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    async with Sink() as server:
        yield server


@pytest.fixture
def repo_pythonpath() -> dict[str, str]:
    """Lets a function process import `tests.fnkit.sample_functions` from the repository."""
    return {"PYTHONPATH": str(REPO_ROOT)}
