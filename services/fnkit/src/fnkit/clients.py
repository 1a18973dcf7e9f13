"""The process's clients, for a Function's lifespan and for code outside one (CronJobs).

A run-to-completion job (`python -m cleanup`) is not served, so it has no lifespan; it opens
the same Context a function gets, with the same client settings and the same refusal of
placeholder secrets, through `open_context`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from fnkit.config import FunctionSettings
from fnkit.context import Context
from fnkit.emit import Emitter

if TYPE_CHECKING:
    from minio import Minio
    from pymongo import AsyncMongoClient

S = TypeVar("S", bound=FunctionSettings)


def mongo_client(name: str, settings: FunctionSettings) -> AsyncMongoClient[dict[str, Any]]:
    """One pooled async client; `name` shows up as the appname in the server's logs."""
    from pymongo import AsyncMongoClient

    timeout_ms = int(settings.mongo_timeout_seconds * 1000)
    return AsyncMongoClient(
        settings.mongo_url.get_secret_value(),
        appname=name,
        tz_aware=True,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=min(timeout_ms, 2000),
    )


def minio_client(settings: FunctionSettings) -> Minio:
    """The sync MinIO client, with a connection pool as large as the blocking thread pool."""
    import urllib3
    from minio import Minio

    # Short connect timeout and few retries: a dead MinIO must become a 503 quickly, and the
    # broker retries the event anyway. Pool size matches the threads that use it.
    http = urllib3.PoolManager(
        maxsize=settings.blocking_workers,
        timeout=urllib3.Timeout(connect=2.0, read=30.0),
        retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504)),
    )
    return Minio(
        settings.minio_endpoint,
        access_key=settings.minio_access_key,
        secret_key=settings.minio_secret_key.get_secret_value(),
        secure=settings.minio_secure,
        region=settings.minio_region,
        http_client=http,
    )


def refuse_placeholder_secrets(
    name: str, settings: FunctionSettings, *, mongo: bool, minio: bool
) -> None:
    """Raise RuntimeError outside ENVIRONMENT=dev when a secret in use is a placeholder."""
    if settings.environment == "dev":
        return
    placeholders = settings.placeholder_secrets(mongo=mongo, minio=minio)
    if placeholders:
        raise RuntimeError(
            f"{name}: refusing to start with development placeholder secrets in "
            f"{', '.join(placeholders)} (ENVIRONMENT={settings.environment}); "
            "set real secrets, or ENVIRONMENT=dev on a laptop"
        )


@asynccontextmanager
async def open_context(
    name: str, settings: S, *, mongo: bool = False, minio: bool = False
) -> AsyncIterator[Context[S]]:
    """A Context with the clients asked for; they are closed when the block ends."""
    refuse_placeholder_secrets(name, settings, mongo=mongo, minio=minio)
    executor = ThreadPoolExecutor(settings.blocking_workers, thread_name_prefix=name)
    emitter = Emitter(
        settings.k_sink,
        function=name,
        timeout=settings.emit_timeout_seconds,
        attempts=settings.emit_attempts,
        backoff=settings.emit_backoff_seconds,
    )
    ctx = Context(
        name,
        settings,
        emitter,
        executor,
        mongo=mongo_client(name, settings) if mongo else None,
        minio=minio_client(settings) if minio else None,
    )
    try:
        yield ctx
    finally:
        await emitter.aclose()
        if ctx.mongo is not None:
            await ctx.mongo.close()
        executor.shutdown(wait=True)
