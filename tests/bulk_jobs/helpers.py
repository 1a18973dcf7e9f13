"""Helpers of bulk-jobs' tests: a fast recording broker, and waiting for conditions."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
import pytest

T = TypeVar("T")


@dataclass
class Posted:
    id: str
    type: str
    headers: dict[str, str]
    body: bytes

    def data(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class RecordingBroker:
    """A real HTTP/1.1 server (keep-alive) standing in for the broker's ingress.

    `answer(n)` gives the status of the n-th request (0-based); requests answered 2xx are
    `accepted`. Light enough to take a hundred thousand events without being the bottleneck.
    """

    answer: Callable[[int], int] = lambda n: 202
    keep_bodies: bool = True
    accepted: list[Posted] = field(default_factory=list)
    requests: int = 0
    server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def ids(self) -> Counter[str]:
        return Counter(posted.id for posted in self.accepted)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")[1:]
                headers = {
                    name.strip().lower(): value.strip()
                    for name, _, value in (line.partition(":") for line in lines if line)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                status = self.answer(self.requests)
                self.requests += 1
                if 200 <= status < 300:
                    self.accepted.append(
                        Posted(
                            headers.get("ce-id", ""),
                            headers.get("ce-type", ""),
                            headers if self.keep_bodies else {},
                            body if self.keep_bodies else b"",
                        )
                    )
                writer.write(f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n".encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def wait_for(probe: Callable[[], Awaitable[T | None]], what: str, within: float = 60.0) -> T:
    """Poll until `probe` returns something truthy; fail saying what did not happen."""
    deadline = time.monotonic() + within
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"not within {within:g}s: {what}")
        await asyncio.sleep(0.1)
