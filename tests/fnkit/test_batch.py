"""Group commit: concurrent submits share flushes, and each caller gets its own outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from fnkit import Unavailable
from fnkit.batch import Batcher

pytestmark = pytest.mark.unit


class Recorder:
    """A write that records its batches and answers each item with its double."""

    def __init__(self, pause: float = 0.01) -> None:
        self.batches: list[list[int]] = []
        self.pause = pause

    async def __call__(self, items: Sequence[int]) -> list[int | Exception]:
        self.batches.append(list(items))
        await asyncio.sleep(self.pause)
        return [n * 2 if n >= 0 else ValueError(f"negative: {n}") for n in items]


async def test_a_lone_submit_is_flushed_at_once_and_gets_its_outcome() -> None:
    write = Recorder()
    batcher: Batcher[int, int] = Batcher("lone", write)

    assert await batcher.submit(21) == 42
    assert write.batches == [[21]]


async def test_submits_arriving_during_a_flush_share_the_next_one() -> None:
    write = Recorder(pause=0.05)
    batcher: Batcher[int, int] = Batcher("shared", write)

    first = asyncio.create_task(batcher.submit(0))
    await asyncio.sleep(0.01)  # the first flush is under way
    rest = await asyncio.gather(*(batcher.submit(n) for n in range(1, 51)))

    assert await first == 0
    assert rest == [n * 2 for n in range(1, 51)]
    assert write.batches == [[0], list(range(1, 51))]


async def test_batches_are_cut_at_max_items() -> None:
    write = Recorder(pause=0.02)
    batcher: Batcher[int, int] = Batcher("cut", write, max_items=10)

    first = asyncio.create_task(batcher.submit(-0))
    await asyncio.sleep(0.005)
    await asyncio.gather(*(batcher.submit(n) for n in range(1, 26)))
    await first

    assert [len(b) for b in write.batches] == [1, 10, 10, 5]


async def test_an_item_that_fails_alone_fails_only_its_caller() -> None:
    batcher: Batcher[int, int] = Batcher("alone", Recorder())

    outcomes = await asyncio.gather(
        batcher.submit(1), batcher.submit(-1), batcher.submit(2), return_exceptions=True
    )

    assert outcomes[0] == 2 and outcomes[2] == 4
    assert isinstance(outcomes[1], ValueError)


async def test_a_failed_write_fails_its_batch_and_the_next_batch_still_runs() -> None:
    calls = 0

    async def flaky(items: Sequence[int]) -> list[int | Exception]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        if calls == 1:
            raise ConnectionError("server went away")
        return list(items)

    batcher: Batcher[int, int] = Batcher("flaky", flaky)
    first = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(0.005)
    second = asyncio.create_task(batcher.submit(2))

    with pytest.raises(ConnectionError):
        await first
    assert await second == 2


async def test_a_write_with_the_wrong_number_of_outcomes_fails_its_batch() -> None:
    async def short(items: Sequence[int]) -> list[int | Exception]:
        return []

    batcher: Batcher[int, int] = Batcher("short", short)

    with pytest.raises(RuntimeError, match="0 outcomes for 1 items"):
        await batcher.submit(1)


async def test_a_caller_that_goes_away_does_not_stop_its_item_being_written() -> None:
    write = Recorder(pause=0.05)
    batcher: Batcher[int, int] = Batcher("gone", write)

    waiting = asyncio.create_task(batcher.submit(7))
    await asyncio.sleep(0.01)
    waiting.cancel()
    assert await batcher.submit(8) == 16

    assert [7] in write.batches


async def test_a_cancelled_flush_answers_its_waiters_with_503() -> None:
    started = asyncio.Event()

    async def stuck(items: Sequence[int]) -> list[int | Exception]:
        started.set()
        await asyncio.sleep(60)
        return list(items)

    batcher: Batcher[int, int] = Batcher("stuck", stuck)
    waiter = asyncio.create_task(batcher.submit(1))
    await started.wait()
    queued = asyncio.create_task(batcher.submit(2))
    await asyncio.sleep(0)
    flusher = batcher._flusher
    assert flusher is not None
    flusher.cancel()

    for task in (waiter, queued):
        with pytest.raises(Unavailable):
            await task
    assert batcher.pending() == 0
