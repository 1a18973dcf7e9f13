"""One writer at a time per product, within this process.

MongoDB applies a single-document update atomically, so the version-conditional write in
store.py is enough to tell concurrent writers apart, across any number of replicas. FerretDB
v1 (the test server) does not: it reads the document, applies the update in its own process
and writes the whole document back, so two concurrent updates of one document can both
succeed and one be lost (measured: 50 concurrent `$inc` of one field left it at 6). Taking
this lock around every read-check-write of a product (changes, and the outbox's pops) keeps a
single replica correct on FerretDB as well; several replicas need MongoDB.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager


class KeyedLock:
    """`async with locks(key)`: mutual exclusion per key; idle keys take no memory."""

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
