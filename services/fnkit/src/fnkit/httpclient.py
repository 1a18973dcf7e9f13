"""A small pooled HTTP/1.1 client for the event hot path: emits and devplane's deliveries.

In the fan-out pattern every item crosses it several times (the emit, the delivery to the
subscriber, its reply's delivery), so it is built for that one job: POST bytes, read the
status, headers and body, keep the connection alive. Responses are parsed by httptools (the
C parser uvicorn uses); measured on the project's machines it costs about a tenth of the CPU
of an httpx request, which is what lets one devplane process deliver thousands of events a
second.

Connections are kept per origin and reused; a request on a reused connection that the server
closed before answering (an idle keep-alive timing out) is sent once more on a new one. A
request cancelled half way (a timeout) closes its connection, whose state is then unknown.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from dataclasses import dataclass, field
from typing import Final, cast
from urllib.parse import urlsplit

import httptools

Headers = list[tuple[bytes, bytes]]

IDLE_SECONDS: Final = 4.0  # below uvicorn's default keep-alive (5 s), so servers never race us
MAX_BODY: Final = 16 << 20


def header_lines(headers: Headers) -> bytes:
    """Request headers serialised once, so that retries and duplicates reuse the bytes."""
    return b"".join(b"%s: %s\r\n" % pair for pair in headers)


class HttpError(Exception):
    """The request failed before a complete response arrived."""


class ConnectError(HttpError):
    pass


class ProtocolError(HttpError):
    pass


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Headers
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class _Target:
    host: str
    port: int
    tls: bool
    path: bytes
    host_header: bytes

    @property
    def origin(self) -> tuple[str, int, bool]:
        return self.host, self.port, self.tls


def _target(url: str) -> _Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(parts.hostname, port, tls, path.encode(), parts.netloc.encode())


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self.used = False
        self._done: asyncio.Future[Response] | None = None
        self._headers: Headers = []
        self._body: list[bytes] = []
        self._size = 0
        self._started = False
        self._head_done = False

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._started = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ProtocolError(f"invalid HTTP response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._done is None or self._done.done():
            return
        framed = any(name in (b"content-length", b"transfer-encoding") for name, _ in self._headers)
        if self._head_done and not framed:
            # A body without length ends when the server closes the connection.
            self._done.set_result(
                Response(self.parser.get_status_code(), self._headers, b"".join(self._body))
            )
        else:
            self._fail(ConnectError("connection closed before the response was complete"))

    def on_headers_complete(self) -> None:
        self._head_done = True

    # -- httptools callbacks --------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_BODY:
            self._fail(ProtocolError(f"response body larger than {MAX_BODY} bytes"))
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._done is not None and not self._done.done():
            keep = self.parser.should_keep_alive()
            self._done.set_result(
                Response(self.parser.get_status_code(), self._headers, b"".join(self._body))
            )
            if not keep:
                self.close()

    # -- requests -------------------------------------------------------------------------

    def _fail(self, error: HttpError) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_exception(error)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    @property
    def answered_nothing(self) -> bool:
        return not self._started

    async def request(self, message: bytes) -> Response:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        self._headers, self._body, self._size = [], [], 0
        self._started = self._head_done = False
        self.used = True
        self.transport.write(message)
        try:
            return await self._done
        except asyncio.CancelledError:
            self.close()
            raise


@dataclass
class HttpClient:
    """Keep-alive connections per origin; as many as there are concurrent requests."""

    _idle: dict[tuple[str, int, bool], deque[_Connection]] = field(default_factory=dict)
    _targets: dict[str, _Target] = field(default_factory=dict)
    _tls: ssl.SSLContext | None = None
    _closed: bool = False

    async def post(self, url: str, head: bytes, body: bytes) -> Response:
        """POST `body` with the header lines `head` (see `header_lines`)."""
        target = self._targets.get(url)
        if target is None:
            target = self._targets[url] = _target(url)
        message = b"".join(
            (
                b"POST ",
                target.path,
                b" HTTP/1.1\r\nhost: ",
                target.host_header,
                b"\r\n",
                head,
                b"content-length: %d\r\n\r\n" % len(body),
                body,
            )
        )
        connection, reused = await self._connection(target)
        try:
            response = await connection.request(message)
        except ConnectError:
            if not (reused and connection.answered_nothing):
                raise
            # The server dropped an idle connection as we reused it: nothing was processed.
            connection, _ = await self._connection(target, fresh=True)
            response = await connection.request(message)
        self._release(target, connection)
        return response

    async def _connection(self, target: _Target, fresh: bool = False) -> tuple[_Connection, bool]:
        loop = asyncio.get_running_loop()
        idle = self._idle.get(target.origin)
        while idle and not fresh:
            connection = idle.pop()
            if not connection.closed and loop.time() - connection.idle_since < IDLE_SECONDS:
                return connection, True
            connection.close()
        if target.tls and self._tls is None:
            self._tls = ssl.create_default_context()
        try:
            _, protocol = await loop.create_connection(
                _Connection,
                target.host,
                target.port,
                ssl=self._tls if target.tls else None,
            )
        except OSError as exc:
            raise ConnectError(f"cannot connect to {target.host}:{target.port}: {exc}") from None
        return protocol, False

    def _release(self, target: _Target, connection: _Connection) -> None:
        if connection.closed or self._closed:
            connection.close()
            return
        connection.idle_since = asyncio.get_running_loop().time()
        self._idle.setdefault(target.origin, deque()).append(connection)

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
