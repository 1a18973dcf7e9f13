"""Mutual exclusion per key: within one process (`KeyedLock`), and across processes and
replicas through MongoDB (`LeaseLock`).

`LeaseLock` is built on the one write both MongoDB and FerretDB make atomic: inserting a
document whose `_id` exists fails. FerretDB v1 applies updates by reading the document,
changing it in its own process and writing it back, so a conditional update or an `$inc`
cannot decide who wins there; a unique insert can.

- Acquire: insert `{_id: key, owner, lease_until}`. It fails while someone holds the key, and
  the contender polls (with backoff and jitter) until it succeeds or `wait_seconds` pass
  (then `Unavailable`, a 503: the caller's caller retries later).
- Release: delete the document, if this owner still has it.
- A holder that crashed leaves its document behind until `lease_until`. Then one contender
  takes the key over: it locks "the takeover of this key from that owner" (the same unique
  insert, so exactly one contender wins), deletes the stale document and unlocks; everyone
  then competes by inserting, as usual. Deleting a lock document is never a decision made by
  a conditional update.

A lease is a promise about time: work under the lock must end well inside `lease_seconds`,
and hosts' clocks must agree to well within it (NTP). `Lease.ensure()` lets the holder check,
before a write that must not happen outside the lock, that enough of its lease is left.
Contenders in the same process queue on a `KeyedLock` first, so they do not poll MongoDB
against each other.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure

from fnkit.errors import Unavailable
from fnkit.mongo import is_duplicate_key

__all__ = ["KeyedLock", "Lease", "LeaseLock", "LockBusy"]

log = logging.getLogger("fnkit.locks")

COLLECTION: Final = "fnkit_locks"
_TAKEOVER: Final = "\x1ftakeover\x1f"
_FIRST_POLL: Final = 0.005
_MAX_POLL: Final = 0.1
_RELEASE_ATTEMPTS: Final = 5
_HOLDER: Final = f"{socket.gethostname()}:{os.getpid()}"


class KeyedLock:
    """`async with locks(key)`: mutual exclusion per key in this process; idle keys take no
    memory."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def __call__(self, key: Hashable) -> AsyncIterator[None]:
        lock, holders = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, holders + 1)
        try:
            async with lock:
                yield
        finally:
            _, holders = self._locks[key]
            if holders == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, holders - 1)

    def __len__(self) -> int:
        return len(self._locks)


class LockBusy(Unavailable):
    """The key stayed locked for the whole wait: a 503, so the caller retries later."""

    code = "lock_busy"


@dataclass(frozen=True, slots=True)
class Lease:
    """A held key: who holds it and until when (by this process's monotonic clock)."""

    key: str
    owner: str
    deadline: float

    def remaining(self) -> float:
        """Seconds of the lease left."""
        return self.deadline - time.monotonic()

    def ensure(self, margin: float) -> None:
        """Raise Unavailable unless at least `margin` seconds of the lease are left."""
        if self.remaining() < margin:
            raise Unavailable(
                f"the lock on {self.key!r} is about to expire; not writing outside it, retry"
            )


class LeaseLock:
    """Mutual exclusion per key across processes: `async with lock.hold(key) as lease: ...`."""

    def __init__(
        self,
        collection: AsyncCollection[dict[str, Any]],
        *,
        lease_seconds: float = 15.0,
        wait_seconds: float = 10.0,
    ) -> None:
        self.collection = collection
        self.lease_seconds = lease_seconds
        self.wait_seconds = wait_seconds
        self._local = KeyedLock()

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[Lease]:
        """Hold `key` for the block; LockBusy (503) if it cannot be had within wait_seconds."""
        async with self._local(key):
            lease = await self._acquire(key)
            try:
                yield lease
            finally:
                await self._release(lease)

    async def _acquire(self, key: str) -> Lease:
        give_up = time.monotonic() + self.wait_seconds
        poll = _FIRST_POLL
        while True:
            lease, holder = await self._attempt(key)
            if lease is not None:
                return lease
            if time.monotonic() >= give_up:
                raise LockBusy(
                    f"{key!r} stayed locked for {self.wait_seconds:g}s"
                    + (f" (by {holder})" if holder else "")
                    + "; retry later"
                )
            await asyncio.sleep(poll * (0.5 + random.random()))  # noqa: S311 - jitter
            poll = min(poll * 2, _MAX_POLL)

    async def _attempt(self, key: str) -> tuple[Lease | None, str | None]:
        """One try: the lease, or None and who holds the key (taking a stale holder's over)."""
        owner = uuid.uuid4().hex
        started = time.monotonic()
        now = datetime.now(UTC)
        try:
            await self.collection.insert_one(
                {
                    "_id": key,
                    "owner": owner,
                    "holder": _HOLDER,
                    "acquired_at": now,
                    "lease_until": now + timedelta(seconds=self.lease_seconds),
                }
            )
        except OperationFailure as exc:
            if not is_duplicate_key(exc):
                raise
        else:
            return Lease(key, owner, started + self.lease_seconds), None
        current = await self.collection.find_one({"_id": key})
        if current is None:
            return None, None  # released in between
        if _aware(current["lease_until"]) < datetime.now(UTC):
            await self._take_over(key, current["owner"])
        return None, str(current.get("holder", "?"))

    async def _take_over(self, key: str, stale_owner: str) -> None:
        """Remove a crashed holder's lock document. The takeover is itself guarded by a lock
        named after the stale owner, so exactly one contender deletes that document (and a
        contender that crashes half way through a takeover is taken over in turn)."""
        guard, _ = await self._attempt(f"{key}{_TAKEOVER}{stale_owner}")
        if guard is None:
            return
        try:
            log.warning("lock lease expired; taking it over", extra={"key": key})
            await self.collection.delete_one({"_id": key, "owner": stale_owner})
        finally:
            await self._release(guard)

    async def _release(self, lease: Lease) -> None:
        for attempt in range(_RELEASE_ATTEMPTS):
            try:
                await self.collection.delete_one({"_id": lease.key, "owner": lease.owner})
                return
            except Exception as exc:
                problem = f"{type(exc).__name__}: {exc}"
                # A busy server (FerretDB's SQLite answers SQLITE_BUSY under load) usually
                # takes the delete a moment later; every try saves contenders the whole lease.
                await asyncio.sleep(_FIRST_POLL * 2**attempt)
        # The key stays locked until its lease runs out; then a contender takes it over.
        log.warning(
            "lock release failed; the lease will expire",
            extra={"key": lease.key, "error": problem},
        )


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
