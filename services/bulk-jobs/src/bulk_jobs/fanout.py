"""The fan-out: one `item.requested` per item, bounded, checkpointed and resumable.

A job's emission runs in slices. A slice holds the job's lease (fnkit.locks.LeaseLock, so
one replica emits a job at a time), reads the job's checkpoint, streams items from there
and posts them to the broker with `emit_concurrency` in flight, for `emission_slice_seconds`;
then it writes the checkpoint and lets the lease go. The checkpoint is the *watermark*: the
longest prefix of items that are all out (their index, and their position in the source),
written every `checkpoint_every` items and at the end of every slice, also on shutdown.

Whoever resumes (this process at the next slice, or any replica that finds the emission
unfinished: at start-up and every `resume_interval_seconds`) starts at the watermark, so no
item is lost. Items past it that were already out are posted again: at most
`checkpoint_every + emit_window` of them after a crash, none after a clean shutdown except
those whose post was cut off. Each item's event id is `<job>:<index>`, so a re-post is a
duplicate any consumer recognises (and the aggregator counts each item once anyway).

The total of a JSON Lines job is unknown until its stream ends. The last item is read before
the one before it is posted, so the total is stored before the last item goes out; every
result is recorded after its item went out, so the check that follows the last result to be
recorded always sees the total.

A broker that refuses an event (full queue, outage) is retried with backoff for as long as
it takes; the job's progress shows the wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator
from typing import Any, Final

import orjson
from fnkit import Context, EmitError
from fnkit.batch import Batcher
from fnkit.locks import LeaseLock, LockBusy
from minio.error import S3Error

from bulk_jobs.config import Settings
from bulk_jobs.sources import InlineItems, Item, ItemSource, ObjectItems
from bulk_jobs.store import Emission, ItemResult, JobStore

log = logging.getLogger("bulk_jobs.fanout")

ITEM_REQUESTED: Final = "io.knative-playbook.item.requested.v1"

# S3 errors that mean the source will never be read as it was when the job started.
_SOURCE_GONE: Final = frozenset({"NoSuchKey", "NoSuchBucket", "PreconditionFailed"})
_LEASE_MARGIN: Final = 5.0  # seconds of lease a slice keeps in hand for its last checkpoint
_MAX_RETRY_DELAY: Final = 5.0


def item_event_id(job_id: str, index: int) -> str:
    return f"{job_id}:{index}"


class SourceGone(Exception):
    """The job's source object was deleted or replaced: the job cannot go on."""


class Watermark:
    """The longest prefix of items that are all out: where a resume starts."""

    def __init__(self, index: int, position: int) -> None:
        self.index = index
        self.position = position
        self._open: deque[list[Any]] = deque()  # [index, end, out?] in source order
        self._by_index: dict[int, list[Any]] = {}
        self._moved = asyncio.Event()

    def opened(self, item: Item) -> None:
        entry = [item.index, item.end, False]
        self._open.append(entry)
        self._by_index[item.index] = entry

    def closed(self, index: int) -> None:
        self._by_index.pop(index)[2] = True
        while self._open and self._open[0][2]:
            done, end, _ = self._open.popleft()
            self.index, self.position = done + 1, end
            self._moved.set()

    @property
    def open(self) -> int:
        return len(self._open)

    async def reach(self, index: int) -> None:
        """Wait until the watermark is at `index` or beyond."""
        while self.index < index:
            self._moved.clear()
            await self._moved.wait()


async def _with_last(
    items: AsyncGenerator[Item, None],
) -> AsyncGenerator[tuple[Item, bool], None]:
    """Each item and whether it is the last: the next one is read before it is handed out."""
    try:
        current = await anext(items)
    except StopAsyncIteration:
        return
    async for following in items:
        yield current, False
        current = following
    yield current, True


class FanOut:
    """Runs the emissions of jobs in this process, and resumes unfinished ones."""

    def __init__(
        self,
        ctx: Context[Settings],
        store: JobStore,
        lock: LeaseLock,
        results: Batcher[ItemResult, bool],
    ) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.store = store
        self.lock = lock
        self.results = results
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._resumer: asyncio.Task[None] | None = None

    def start(self, job_id: str) -> None:
        """Emit the job's items in the background, unless this process already is."""
        if job_id not in self._tasks:
            self._tasks[job_id] = asyncio.create_task(self._run(job_id), name=f"emit-{job_id}")

    def start_resuming(self) -> None:
        if self._resumer is None:
            self._resumer = asyncio.create_task(self._resume_forever(), name="emission-resume")

    async def close(self) -> None:
        """Stop emitting; each job's watermark is written on the way out."""
        tasks = [*self._tasks.values(), *([self._resumer] if self._resumer else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _resume_forever(self) -> None:
        while True:
            try:
                for job_id in await self.store.unfinished_emissions():
                    self.start(job_id)
            except Exception as exc:
                log.warning(
                    "looking for unfinished emissions failed",
                    extra={"error": f"{type(exc).__name__}: {exc}"},
                )
            await asyncio.sleep(self.settings.resume_interval_seconds)

    async def _run(self, job_id: str) -> None:
        try:
            finished = False
            while not finished:
                async with self.lock.hold(f"bulk-jobs/emit/{job_id}") as lease:
                    finished = await self._slice(job_id, lease.remaining() - _LEASE_MARGIN)
        except LockBusy:
            pass  # another replica is emitting it
        except Exception as exc:
            log.warning(
                "emission interrupted; it resumes from its checkpoint",
                extra={"job_id": job_id, "error": f"{type(exc).__name__}: {exc}"},
            )
        finally:
            self._tasks.pop(job_id, None)

    async def _slice(self, job_id: str, seconds: float) -> bool:
        """Emit for one slice from the checkpoint; True when the emission is finished."""
        job = await self.store.get(job_id)
        if job is None or job["emission"] != Emission.RUNNING.value:
            return True
        source = await self._source(job)
        mark = Watermark(job["emitted"], job["position"])
        queue: asyncio.Queue[Item | None] = asyncio.Queue(self.settings.emit_concurrency)
        producer = asyncio.create_task(self._produce(job, source, mark, queue))
        workers = [
            asyncio.create_task(self._work(job, queue, mark))
            for _ in range(self.settings.emit_concurrency)
        ]
        tasks = {producer, *workers}
        finished = False
        try:
            async with asyncio.timeout(seconds):
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    task.result()
            finished = producer.result() and mark.open == 0
        except TimeoutError:
            log.warning(
                "emission slice ran out of lease; resuming from the checkpoint",
                extra={"job_id": job_id, "emitted": mark.index},
            )
        except S3Error as exc:
            if exc.code not in _SOURCE_GONE:
                raise
            await self.store.fail(job_id, f"the source object changed or is gone: {exc.code}")
            return True
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.store.checkpoint(job_id, mark.index, mark.position, done=finished)
        if finished:
            log.info("emission finished", extra={"job_id": job_id, "items": mark.index})
            # An empty job, or one whose last results were recorded here: nothing else checks.
            await self.store.complete_if_done(job_id)
        return finished

    async def _source(self, job: dict[str, Any]) -> ItemSource:
        source = job["source"]
        if source["kind"] == "inline":
            return InlineItems(orjson.loads(await self.store.inline_items(job["_id"])))
        return ObjectItems(
            self.ctx.minio,
            self.ctx.run_blocking,
            bucket=source["bucket"],
            key=source["key"],
            etag=source["etag"],
            size=source["size"],
            chunk_bytes=self.settings.read_chunk_bytes,
            max_line=self.settings.max_line_bytes,
        )

    async def _produce(
        self,
        job: dict[str, Any],
        source: ItemSource,
        mark: Watermark,
        queue: asyncio.Queue[Item | None],
    ) -> bool:
        """Queue items until the source ends (True) or the slice is over (False)."""
        job_id, total = job["_id"], job.get("total")
        stop_at = time.monotonic() + self.settings.emission_slice_seconds
        checkpointed = mark.index
        exhausted = True
        items = source.items(mark.index, mark.position)
        async with contextlib.aclosing(items), contextlib.aclosing(_with_last(items)) as pairs:
            async for item, last in pairs:
                if last and total is None:
                    total = item.index + 1
                    await self.store.set_total(job_id, total)
                await mark.reach(item.index - self.settings.emit_window + 1)
                mark.opened(item)
                await queue.put(item)
                if mark.index - checkpointed >= self.settings.checkpoint_every:
                    await self.store.checkpoint(job_id, mark.index, mark.position)
                    checkpointed = mark.index
                if not last and time.monotonic() > stop_at:
                    exhausted = False
                    break
        if exhausted and total is None:  # nothing was left to read: the items before
            await self.store.set_total(job_id, mark.index)
        for _ in range(self.settings.emit_concurrency):
            await queue.put(None)
        return exhausted

    async def _work(
        self, job: dict[str, Any], queue: asyncio.Queue[Item | None], mark: Watermark
    ) -> None:
        while (item := await queue.get()) is not None:
            if item.problem is not None:
                await self.results.submit(
                    ItemResult(job["_id"], item.index, succeeded=False, reason=item.problem)
                )
            else:
                await self._emit(job, item)
            mark.closed(item.index)

    async def _emit(self, job: dict[str, Any], item: Item) -> None:
        job_id = job["_id"]
        event = self.ctx.event(
            ITEM_REQUESTED,
            {"job_id": job_id, "index": item.index, "record": item.record},
            subject=f"{job_id}/{item.index}",
            id=item_event_id(job_id, item.index),
            traceparent=job.get("traceparent"),
        )
        delay = 0.5
        while True:
            try:
                await self.ctx.emit(event)
                return
            except EmitError as exc:
                log.warning(
                    "broker did not take an item; retrying",
                    extra={"job_id": job_id, "index": item.index, "error": exc.message},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_RETRY_DELAY)
