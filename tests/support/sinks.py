"""Real HTTP servers standing in for a broker or an API: they record requests and answer as told."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import orjson
import uvicorn
from devplane.servers import free_port
from fnkit import CloudEvent
from fnkit.events import parse_event

from tests.support.waiting import wait_for


class AsgiServer:
    """A uvicorn server on a port of its own, kept across stop and start; subclasses `answer`."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        """The status and body to answer one request with."""
        raise NotImplementedError

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        status, reply = await self.answer(scope["path"], headers, body)
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": reply})

    async def start(self) -> None:
        config = uvicorn.Config(
            self._app,
            host="127.0.0.1",
            port=self.port,
            log_level="error",
            lifespan="off",
            interface="asgi3",
        )
        self._server = server = uvicorn.Server(config)
        self._task = asyncio.create_task(server.serve())

        async def listening() -> bool:
            return server.started

        await wait_for(listening, f"{type(self).__name__} to listen", every=0.05)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
            self._server = self._task = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


class EventSink(AsgiServer):
    """The broker's ingress (K_SINK): records the CloudEvents posted, answers `status`."""

    # Stopped and started again on its port it plays a broker that goes down; an error `status`
    # has it refuse what it still records.

    def __init__(self) -> None:
        super().__init__()
        self.url += "/"
        self.events: list[CloudEvent] = []
        self.status = 202

    async def answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        self.events.append(parse_event(headers, body))
        return self.status, b""

    def ids(self, event_type: str | None = None) -> list[str]:
        return [e.get_id() for e in self.events if event_type in (None, e.get_type())]


@dataclass
class Request:
    """One request as a stream server read it: lower-cased header names, and the body."""

    headers: dict[str, str]
    body: bytes


@dataclass
class StreamServer:
    """A bare HTTP/1.1 server on asyncio streams, light enough never to be the bottleneck."""

    keep_alive: ClassVar[bool] = False
    server: asyncio.Server | None = field(default=None, init=False)

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

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def reply(self, request: Request) -> bytes | None:
        """The raw HTTP response to `request`, or None to close the connection unanswered."""
        raise NotImplementedError

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
                response = self.reply(Request(headers, body))
                if response is None:
                    break
                writer.write(response)
                await writer.drain()
                if not self.keep_alive:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@dataclass
class Posted:
    """An event the broker accepted."""

    id: str
    type: str
    headers: dict[str, str]
    body: bytes

    def data(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class RecordingBroker(StreamServer):
    """The broker's ingress at volume: `answer(n)` is the n-th request's status (0-based)."""

    # Many requests a connection, as the emitter's pool sends them at volume.
    keep_alive: ClassVar[bool] = True
    answer: Callable[[int], int] = lambda n: 202
    # Without bodies only the ids and types of what was accepted are kept: 100,000 events fit.
    keep_bodies: bool = True
    accepted: list[Posted] = field(default_factory=list)
    requests: int = 0

    def ids(self) -> Counter[str]:
        return Counter(posted.id for posted in self.accepted)

    def reply(self, request: Request) -> bytes:
        status = self.answer(self.requests)
        self.requests += 1
        if 200 <= status < 300:
            headers = request.headers
            self.accepted.append(
                Posted(
                    headers.get("ce-id", ""),
                    headers.get("ce-type", ""),
                    headers if self.keep_bodies else {},
                    request.body if self.keep_bodies else b"",
                )
            )
        return f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n".encode()
