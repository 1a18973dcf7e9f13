"""A function's app run in the test's own process, reached through an ASGI client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

import httpx
from fnkit import Function, FunctionSettings

from tests.support.waiting import wait_for

S = TypeVar("S", bound=FunctionSettings)
A = TypeVar("A")


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


def app_starter(
    create_app: Callable[[S], Function[S]],
    settings: Callable[[dict[str, Any]], S],
    wrap: Callable[[Function[S], httpx.AsyncClient], A],
    defaults: dict[str, Any],
    *,
    base_url: str,
) -> Callable[..., AbstractAsyncContextManager[A]]:
    """`async with start(**overrides) as app`: `create_app` in-process, seen through `wrap`."""

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[A]:
        fn = create_app(settings({**defaults, **overrides}))
        async with serve_in_process(fn, base_url=base_url) as client:
            yield wrap(fn, client)

    return start


def outbox_app_settings(mongo_url: str, mongo_db: str, k_sink: str) -> dict[str, Any]:
    """An outbox app's settings on the test's database and sink."""
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
    }
