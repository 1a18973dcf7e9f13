"""The delivery client against small in-process HTTP servers that misbehave on purpose."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from devplane.servers import free_port
from fnkit.httpclient import ConnectError, HttpClient, ProtocolError, header_lines

pytestmark = pytest.mark.unit

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
HEAD = header_lines([(b"ce-id", b"1"), (b"content-type", b"application/json")])


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    return head, await reader.readexactly(length)


class Server:
    def __init__(self, respond: Callable[[int, bytes], bytes]) -> None:
        self.respond = respond
        self.connections = 0
        self.requests: list[bytes] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/path?q=1"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head, body = await read_request(reader)
                self.requests.append(head + body)
                reply = self.respond(len(self.requests), body)
                writer.write(reply)
                await writer.drain()
                if b"connection: close" in reply.lower() or not reply:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Callable[[int, bytes], bytes]], Awaitable[Server]]]:
    servers: list[asyncio.Server] = []

    async def start(respond: Callable[[int, bytes], bytes]) -> Server:
        server = Server(respond)
        servers.append(await asyncio.start_server(server.handle, "127.0.0.1", server.port))
        return server

    yield start
    for server in servers:
        server.close()


def ok(body: bytes = b"", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def test_posts_the_body_and_headers_and_reuses_the_connection(serve) -> None:
    server = await serve(lambda n, body: ok(b"echo:" + body, b"ce-id: r\r\n"))
    client = HttpClient()

    first = await client.post(server.url, HEAD, b'{"a": 1}')
    second = await client.post(server.url, HEAD, b'{"a": 2}')

    assert (first.status, first.body) == (200, b'echo:{"a": 1}')
    assert first.header(b"ce-id") == b"r"
    assert second.body == b'echo:{"a": 2}'
    assert server.connections == 1
    assert server.requests[0].startswith(b"POST /path?q=1 HTTP/1.1\r\n")
    assert b"ce-id: 1\r\n" in server.requests[0]
    await client.aclose()


async def test_a_chunked_response_is_read_whole(serve) -> None:
    chunked = (
        b"HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    server = await serve(lambda n, body: chunked)
    response = await HttpClient().post(server.url, HEAD, b"{}")
    assert (response.status, response.body) == (503, b"hello world")


async def test_a_body_without_length_ends_with_the_connection(serve) -> None:
    server = await serve(lambda n, body: b"HTTP/1.1 500 Oops\r\nconnection: close\r\n\r\nboom")
    client = HttpClient()
    first = await client.post(server.url, HEAD, b"{}")
    second = await client.post(server.url, HEAD, b"{}")
    assert (first.status, first.body) == (500, b"boom")
    assert second.status == 500
    assert server.connections == 2  # `connection: close` is honoured


async def test_an_idle_connection_the_server_dropped_is_replaced_transparently(serve) -> None:
    # The server answers, then closes without saying so (a keep-alive timeout).
    server = await serve(lambda n, body: ok(b"fine"))
    client = HttpClient()
    await client.post(server.url, HEAD, b"{}")
    for connection in client._idle[("127.0.0.1", server.port, False)]:
        assert connection.transport is not None
        connection.transport.abort()  # as if the server had closed it; not yet noticed
        connection.closed = False
    response = await client.post(server.url, HEAD, b"{}")
    assert response.body == b"fine"
    assert server.connections == 2


async def test_a_refused_connection_is_a_connect_error() -> None:
    with pytest.raises(ConnectError, match="cannot connect"):
        await HttpClient().post(f"http://127.0.0.1:{free_port()}/", HEAD, b"{}")


async def test_a_server_hanging_up_mid_request_is_a_connect_error(serve) -> None:
    server = await serve(lambda n, body: b"")
    with pytest.raises(ConnectError, match="closed before the response"):
        await HttpClient().post(server.url, HEAD, b"{}")


async def test_garbage_is_a_protocol_error(serve) -> None:
    server = await serve(lambda n, body: b"NOT HTTP AT ALL\r\n\r\n")
    with pytest.raises(ProtocolError):
        await HttpClient().post(server.url, HEAD, b"{}")


async def test_a_request_cut_by_a_timeout_closes_its_connection(serve) -> None:
    started = asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        started.set()
        await asyncio.sleep(10)

    port = free_port()
    server = await asyncio.start_server(slow, "127.0.0.1", port)
    client = HttpClient()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await client.post(f"http://127.0.0.1:{port}/", HEAD, b"{}")
    assert started.is_set()
    assert not client._idle.get(("127.0.0.1", port, False))
    server.close()


def test_only_http_urls() -> None:
    with pytest.raises(ValueError, match="not an http"):
        asyncio.run(HttpClient().post("ftp://x/", HEAD, b""))
