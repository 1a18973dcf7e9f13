"""JSON Lines cut into items: at any chunk size, bounded per line, blank lines skipped."""

from __future__ import annotations

from typing import Any

import pytest
from bulk_jobs.sources import InlineItems, Item, LineCutter, parse_line

pytestmark = pytest.mark.unit

TEXT = b'{"sku": "A"}\n\n{"sku": "B"}\r\nnot json\n   \n[1, 2]\n{"sku": "C"}'
EXPECTED = [
    ({"sku": "A"}, None),
    ({"sku": "B"}, None),
    (None, "not valid JSON"),
    ([1, 2], None),
    ({"sku": "C"}, None),
]


def cut(data: bytes, chunk: int, start: int = 0, max_line: int = 1000) -> list[tuple[Any, int]]:
    cutter = LineCutter(start, max_line)
    lines = []
    for at in range(0, len(data), chunk):
        lines += cutter.feed(data[at : at + chunk])
    return lines + cutter.finish()


def summary(lines: list[tuple[bytes | None, int]], max_line: int = 1000) -> list[Any]:
    parsed = [parse_line(line, max_line) for line, _ in lines]
    return [(record, problem and problem[:14]) for record, problem in filter(None, parsed)]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 10_000])
def test_lines_and_their_ends_do_not_depend_on_the_chunk_size(chunk: int) -> None:
    lines = cut(TEXT, chunk)

    assert summary(lines) == EXPECTED
    assert lines == cut(TEXT, len(TEXT))
    assert [end for _, end in lines] == [13, 14, 28, 37, 41, 48, len(TEXT)]


def test_an_overlong_line_is_reported_and_the_next_line_is_read_whole() -> None:
    data = b'{"a": 1}\n' + b"x" * 50 + b'\n{"b": 2}\n'

    lines = cut(data, 8, max_line=20)

    assert [line for line, _ in lines] == [b'{"a": 1}', None, b'{"b": 2}']
    assert [end for _, end in lines] == [9, 60, len(data)]
    assert parse_line(None, 20) == (None, "line longer than 20 bytes")


def test_an_overlong_last_line_without_newline_is_still_an_item() -> None:
    lines = cut(b'{"a": 1}\n' + b"y" * 30, 4, max_line=10)

    assert [line for line, _ in lines] == [b'{"a": 1}', None]


def test_a_stream_ending_in_blank_space_has_no_extra_item() -> None:
    assert [line for line, _ in cut(b'{"a": 1}\n  ', 3)] == [b'{"a": 1}']


async def test_inline_items_resume_at_their_index() -> None:
    source = InlineItems([{"n": 0}, {"n": 1}, {"n": 2}])

    items = [item async for item in source.items(1, 1)]

    assert items == [Item(1, 2, {"n": 1}), Item(2, 3, {"n": 2})]
