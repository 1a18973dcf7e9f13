"""Where a job's items come from: an inline list, or a JSON Lines object streamed from MinIO.

Either way items come out one at a time with their `index` (0, 1, 2, ... in source order)
and `end`, the position right after the item: a resume from (index, position) yields exactly
the items that follow. For an object the position is a byte offset, so a resume reads from
there with a range request, and the object is pinned by its ETag: if it changes under the
job, the read fails instead of mixing two files' items.

An object is read `read_chunk_bytes` at a time and cut into lines as it arrives, so memory
holds one chunk and one line whatever the object's size. Blank lines are not items. A line
that is not JSON, or longer than `max_line_bytes`, is an item all the same, with the problem
instead of a record: the job reports it as a failed item rather than losing count.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

import orjson

if TYPE_CHECKING:
    from minio import Minio
    from urllib3 import BaseHTTPResponse

RunBlocking = Callable[..., Awaitable[Any]]

_BOM: Final = b"\xef\xbb\xbf"
_BLANK: Final = b" \t\r\n"


@dataclass(frozen=True, slots=True)
class Item:
    index: int
    end: int
    record: Any = None
    problem: str | None = None


class ItemSource(Protocol):
    def items(self, index: int, position: int) -> AsyncGenerator[Item, None]:
        """The items from `index`, which starts at `position`."""
        ...


class InlineItems:
    """Items posted with the job; the position of an item is its index."""

    def __init__(self, records: list[Any]) -> None:
        self.records = records

    async def items(self, index: int, position: int) -> AsyncGenerator[Item, None]:
        for i in range(index, len(self.records)):
            yield Item(i, i + 1, self.records[i])


class LineCutter:
    """Cuts a byte stream into lines, each with the offset just past its newline."""

    def __init__(self, start: int, max_line: int) -> None:
        self.offset = start  # of the first byte in the buffer
        self.max_line = max_line
        self._buffer = bytearray()
        self._overlong = False  # inside a line already too long: drop bytes to its newline

    def feed(self, chunk: bytes) -> list[tuple[bytes | None, int]]:
        """The lines `chunk` completes: (line, or None if it was too long; its end)."""
        lines: list[tuple[bytes | None, int]] = []
        self._buffer += chunk
        scan_from = 0
        while True:
            newline = self._buffer.find(b"\n", scan_from)
            if newline < 0:
                break
            end = self.offset + newline + 1
            lines.append((None if self._overlong else bytes(self._buffer[:newline]), end))
            self._overlong = False
            del self._buffer[: newline + 1]
            self.offset = end
        if len(self._buffer) > self.max_line:
            # Keep counting the offset; the bytes themselves are of no use any more.
            self.offset += len(self._buffer)
            self._buffer.clear()
            self._overlong = True
        return lines

    def finish(self) -> list[tuple[bytes | None, int]]:
        """The last line, when the stream does not end with a newline."""
        if not self._buffer and not self._overlong:
            return []
        end = self.offset + len(self._buffer)
        line = None if self._overlong else bytes(self._buffer)
        self._buffer.clear()
        self._overlong = False
        self.offset = end
        return [(line, end)] if line is None or line.strip(_BLANK) else []


def parse_line(line: bytes | None, max_line: int) -> tuple[Any, str | None] | None:
    """(record, None), (None, problem), or None for a blank line, which is not an item."""
    if line is None:
        return None, f"line longer than {max_line} bytes"
    text = line.strip(_BLANK)
    if not text:
        return None
    try:
        return orjson.loads(text), None
    except orjson.JSONDecodeError as exc:
        return None, f"not valid JSON: {exc}"


class ObjectItems:
    """Items of a JSON Lines object, streamed."""

    def __init__(
        self,
        minio: Minio,
        run_blocking: RunBlocking,
        *,
        bucket: str,
        key: str,
        etag: str,
        size: int,
        chunk_bytes: int,
        max_line: int,
    ) -> None:
        self.minio = minio
        self.run_blocking = run_blocking
        self.bucket = bucket
        self.key = key
        self.etag = etag
        self.size = size
        self.chunk_bytes = chunk_bytes
        self.max_line = max_line

    async def items(self, index: int, position: int) -> AsyncGenerator[Item, None]:
        if position >= self.size:
            return
        response: BaseHTTPResponse = await self.run_blocking(
            self.minio.get_object,
            self.bucket,
            self.key,
            offset=position,
            request_headers={"If-Match": f'"{self.etag}"'},
        )
        try:
            chunk = await self.run_blocking(response.read, self.chunk_bytes)
            if position == 0 and chunk.startswith(_BOM):
                chunk, position = chunk[len(_BOM) :], len(_BOM)
                chunk = chunk or await self.run_blocking(response.read, self.chunk_bytes)
            cutter = LineCutter(position, self.max_line)
            while True:
                lines = cutter.feed(chunk) if chunk else cutter.finish()
                for line, end in lines:
                    parsed = parse_line(line, self.max_line)
                    if parsed is not None:
                        yield Item(index, end, parsed[0], parsed[1])
                        index += 1
                if not chunk:
                    return
                chunk = await self.run_blocking(response.read, self.chunk_bytes)
        finally:
            await self.run_blocking(_close, response)


def _close(response: BaseHTTPResponse) -> None:
    response.close()
    response.release_conn()
