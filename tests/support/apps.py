"""A function's app run in the test's own process, reached through an ASGI client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fnkit import Function

from tests.support.waiting import wait_for


@asynccontextmanager
async def serve_in_process(
    fn: Function[Any], *, base_url: str, raise_app_exceptions: bool = False
) -> AsyncIterator[httpx.AsyncClient]:
    """Enter `fn`'s lifespan (ASGITransport does not) and yield a client once it is ready."""
    async with fn.api.router.lifespan_context(fn.api):
        # By default like a real server: the response the app sent, even when it also raised after.
        transport = httpx.ASGITransport(app=fn, raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:

            async def ready() -> bool:
                return (await client.get("/health/readiness")).status_code == 200

            await wait_for(ready, f"{fn.name} to become ready", every=0.05)
            yield client


def outbox_app_settings(
    mongo_url: str, mongo_db: str, k_sink: str, **overrides: Any
) -> dict[str, Any]:
    """An outbox app's settings on the test's database and sink; `overrides` win."""
    # One emit attempt and a sweep slowed right down: the sends a test sees are the ones it caused.
    return {
        "environment": "dev",
        "mongo_url": mongo_url,
        "mongo_db": mongo_db,
        "mongo_timeout_seconds": 1.0,
        "k_sink": k_sink,
        "emit_attempts": 1,
        "outbox_sweep_interval_seconds": 3600,
        "outbox_grace_seconds": 0,
        **overrides,
    }
