"""What a handler or route gets: settings, the process's clients, emit, the thread pool."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from fnkit.config import FunctionSettings
from fnkit.emit import Emitter
from fnkit.events import CloudEvent, new_event
from fnkit.tracing import outgoing_traceparent

if TYPE_CHECKING:
    from minio import Minio
    from pymongo import AsyncMongoClient
    from pymongo.asynchronous.database import AsyncDatabase

    from fnkit.idempotency import IdempotencyGuard, Work

S = TypeVar("S", bound=FunctionSettings)
T = TypeVar("T")


class Context(Generic[S]):
    """One per process, created in the app's lifespan and closed on shutdown."""

    def __init__(
        self,
        name: str,
        settings: S,
        emitter: Emitter,
        executor: ThreadPoolExecutor,
        mongo: AsyncMongoClient[dict[str, Any]] | None = None,
        minio: Minio | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.source = settings.event_source or f"/knative-playbook/{name}"
        self.emitter = emitter
        self.executor = executor
        self.mongo = mongo
        self._minio = minio
        self._guard: IdempotencyGuard | None = None
        if mongo is not None:
            from fnkit.idempotency import COLLECTION, IdempotencyGuard

            self._guard = IdempotencyGuard(
                self.db[COLLECTION], settings.idempotency_lease_seconds, name
            )

    @property
    def db(self) -> AsyncDatabase[dict[str, Any]]:
        if self.mongo is None:
            raise RuntimeError(f"{self.name} was not created with mongo=True")
        return self.mongo[self.settings.mongo_db]

    @property
    def minio(self) -> Minio:
        if self._minio is None:
            raise RuntimeError(f"{self.name} was not created with minio=True")
        return self._minio

    @property
    def guard(self) -> IdempotencyGuard:
        if self._guard is None:
            raise RuntimeError(f"{self.name} needs mongo=True for idempotency")
        return self._guard

    def event(
        self, type: str, data: Any = None, *, subject: str | None = None, **extensions: Any
    ) -> CloudEvent:
        """A new event from this function, in the current trace; reply with it or emit it."""
        extensions.setdefault("traceparent", outgoing_traceparent())
        return new_event(type, self.source, data, subject=subject, **extensions)

    async def emit(self, event: CloudEvent) -> None:
        """Post to K_SINK with retries; EmitError (a 503) when the broker will not take it."""
        await self.emitter.emit(event)

    async def once(self, key: str, work: Work) -> tuple[CloudEvent | None, bool]:
        """Run `work` once per business key; returns (reply, whether this call ran it)."""
        return await self.guard.run(key, work)

    async def run_blocking(self, func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run blocking work (MinIO's sync client, Pillow) in the pool, off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(func, *args, **kwargs))
