"""Polling until something holds, failing with what never happened."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


async def wait_for(
    probe: Callable[[], Awaitable[T | None]], what: str, *, within: float = 60.0, every: float = 0.1
) -> T:
    """Poll until `probe` returns something truthy and return it; fail naming `what` otherwise."""
    deadline = time.monotonic() + within
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"not within {within:g}s: {what}")
        await asyncio.sleep(every)


def wait_until(
    probe: Callable[[], T | None], what: str, *, within: float = 60.0, every: float = 0.1
) -> T:
    """`wait_for` for tests without an event loop: a blocking probe, blocking sleeps."""
    deadline = time.monotonic() + within
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"not within {within:g}s: {what}")
        time.sleep(every)
