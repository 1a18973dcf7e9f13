"""One cleanup run: expired records with their objects, orphaned renditions, then the
idempotency records of every function that are older than their retention.

The order of each batch is what makes a run safe to kill and to run twice at once:

1. read a page of expired records (keyset pagination by `_id`);
2. decide which objects each record owns: its upload, unless a newer upload to the same key
   replaced it (HEAD: another ETag), and its renditions, unless a record outside the page
   lists them too (a newer upload of the same key, or another key with the same stem);
3. delete those objects with batch deletes (S3 DeleteObjects), reading MinIO's per-object
   errors; a missing object counts as deleted;
4. delete the records whose objects are all confirmed gone, by `_id`, with the expiry
   condition repeated in the same filter.

A run cut off anywhere leaves records whose objects are partly or wholly gone; the next run
finds them still expired and their objects missing, and finishes them. Two runs at once
delete the same objects (idempotent) and the same records by `_id` (each deletion succeeds
once; the other run's matches nothing): neither fails, and no atomic update is needed, which
FerretDB would not provide.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from fnkit import Context
from fnkit.idempotency import COLLECTION as IDEMPOTENCY_COLLECTION
from fnkit.idempotency import prune, stale_filters
from pymongo.errors import PyMongoError

from cleanup import records, storage
from cleanup.config import Settings
from cleanup.records import Document, Image, ObjectRef
from cleanup.storage import MinioUnavailable, Original

log = logging.getLogger("cleanup")

MAX_PROBLEMS: Final = 20  # error messages kept for the summary; `errors` counts them all


@dataclass
class Summary:
    """What a run did (in a dry run: what it would have done)."""

    dry_run: bool
    expired_before: datetime
    scanned: int = 0  # expired records read
    records_deleted: int = 0
    records_kept: int = 0  # expired, but an object could not be deleted: the next run retries
    objects_deleted: int = 0  # originals and renditions confirmed gone
    objects_skipped: int = 0  # owned by a newer upload or by another record
    orphans_scanned: int = 0  # renditions the orphan sweep looked at
    orphans_deleted: int = 0
    idempotency_records_deleted: int = 0
    errors: int = 0
    interrupted: str | None = None  # why the run stopped early
    duration_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def problem(self, message: str) -> None:
        self.errors += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(message)

    @property
    def succeeded(self) -> bool:
        return self.errors == 0

    def counts(self) -> dict[str, int]:
        return {
            "scanned": self.scanned,
            "records_deleted": self.records_deleted,
            "records_kept": self.records_kept,
            "objects_deleted": self.objects_deleted,
            "objects_skipped": self.objects_skipped,
            "orphans_scanned": self.orphans_scanned,
            "orphans_deleted": self.orphans_deleted,
            "idempotency_records_deleted": self.idempotency_records_deleted,
            "errors": self.errors,
        }

    def view(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "expired_before": self.expired_before.isoformat(),
            **self.counts(),
            "interrupted": self.interrupted,
            "duration_seconds": self.duration_seconds,
            "problems": self.problems,
        }


class Cleanup:
    """A run over the images collection and the buckets, with what it has done so far."""

    def __init__(self, ctx: Context[Settings], *, dry_run: bool) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.images = ctx.db[ctx.settings.images_collection]
        self.dry_run = dry_run
        # Fixed for the whole run: what expires while it runs waits for the next one.
        self.now = datetime.now(UTC)
        self.summary = Summary(dry_run, self.now)

    async def run(self) -> Summary:
        started = time.perf_counter()
        try:
            if not self.dry_run:
                await records.create_indexes(self.images)
            await self._expired()
            if self.settings.sweep_orphans:
                await self._orphans()
            await self._idempotency_records()
        except MinioUnavailable as exc:
            self._interrupted(f"MinIO: {exc}")
        except PyMongoError as exc:
            self._interrupted(f"MongoDB: {type(exc).__name__}: {exc}")
        self.summary.duration_seconds = round(time.perf_counter() - started, 3)
        return self.summary

    def _interrupted(self, reason: str) -> None:
        self.summary.interrupted = reason
        self.summary.problem(reason)

    async def _expired(self) -> None:
        settings = self.settings
        expired = records.expired_filter(
            settings.uploads_bucket, self.now, settings.max_age_cutoff(self.now)
        )
        size = settings.batch_size
        page = await records.expired_page(self.images, expired, None, size)
        batch = 0
        while page:
            # The next page is read while this one's objects are deleted: the cursor is the
            # last _id of this page, whatever happens to its records.
            upcoming = (
                asyncio.ensure_future(
                    records.expired_page(self.images, expired, page[-1]["_id"], size)
                )
                if len(page) == size
                else None
            )
            try:
                await self._batch(page, expired)
            except BaseException:
                if upcoming is not None:
                    upcoming.cancel()
                raise
            batch += 1
            log.info("batch", extra={"batch": batch, **self.summary.counts()})
            page = await upcoming if upcoming is not None else []

    async def _batch(self, page: list[Document], expired: Document) -> None:
        self.summary.scanned += len(page)
        images = []
        for document in page:
            try:
                images.append(Image.parse(document))
            except ValueError as exc:
                self.summary.records_kept += 1
                self.summary.problem(f"record {document['_id']}: {exc}")
        owned = await self._owned(images)
        objects = {ref for refs in owned.values() for ref in refs}
        failed = await self._delete(objects)
        self.summary.objects_deleted += len(objects) - len(failed)
        deletable = [image_id for image_id, refs in owned.items() if failed.isdisjoint(refs)]
        self.summary.records_kept += len(owned) - len(deletable)
        if self.dry_run:
            self.summary.records_deleted += len(deletable)
            log.info(
                "would delete",
                extra={
                    "records": [str(image_id) for image_id in deletable],
                    "objects": [f"{bucket}/{key}" for bucket, key in sorted(objects)],
                },
            )
            return
        self.summary.records_deleted += await records.delete_expired(
            self.images, deletable, expired
        )

    async def _owned(self, images: list[Image]) -> dict[Any, list[ObjectRef]]:
        """The objects each record takes with it; records that could not be checked are left out."""
        checks = asyncio.gather(
            *(
                self.ctx.run_blocking(storage.original, self.ctx.minio, i.bucket, i.key, i.etag)
                for i in images
            ),
            return_exceptions=True,
        )
        sharing = records.referenced(
            self.images,
            [ref for image in images for ref in image.renditions],
            excluding=[image.id for image in images],
        )
        states, shared = await asyncio.gather(checks, sharing)
        for state in states:
            if isinstance(state, MinioUnavailable | asyncio.CancelledError):
                raise state
        owned: dict[Any, list[ObjectRef]] = {}
        for image, state in zip(images, states, strict=True):
            if isinstance(state, BaseException):
                self.summary.records_kept += 1
                reason = getattr(state, "code", None) or f"{type(state).__name__}: {state}"
                self.summary.problem(f"cannot check {image.bucket}/{image.key}: {reason}")
                continue
            if state is Original.REPLACED:
                # The newer upload's processing writes (or wrote) the same rendition keys.
                self.summary.objects_skipped += 1 + len(image.renditions)
                owned[image.id] = []
                continue
            refs = [ref for ref in image.renditions if ref not in shared]
            self.summary.objects_skipped += len(image.renditions) - len(refs)
            if state is Original.CURRENT and not self.settings.keep_originals:
                refs.append((image.bucket, image.key))
            owned[image.id] = refs
        return owned

    async def _delete(self, objects: Iterable[ObjectRef]) -> set[ObjectRef]:
        """Batch-delete `objects`; returns those not confirmed gone (none in a dry run)."""
        by_bucket: dict[str, list[str]] = defaultdict(list)
        for bucket, key in sorted(objects):
            by_bucket[bucket].append(key)
        if self.dry_run or not by_bucket:
            return set()
        results = await asyncio.gather(
            *(
                self.ctx.run_blocking(storage.remove, self.ctx.minio, bucket, keys)
                for bucket, keys in by_bucket.items()
            )
        )
        failed: set[ObjectRef] = set()
        for bucket, errors in zip(by_bucket, results, strict=True):
            for key, code in errors.items():
                failed.add((bucket, key))
                self.summary.problem(f"cannot delete {bucket}/{key}: {code}")
        return failed

    async def _orphans(self) -> None:
        """Delete old renditions no record lists, continuing where the last run stopped."""
        settings = self.settings
        bucket = settings.processed_bucket
        state = self.ctx.db[settings.state_collection]
        sweep = f"orphans:{bucket}/{settings.rendition_prefix}"
        after = await records.sweep_position(state, sweep)
        cutoff = settings.orphan_cutoff(self.now)
        listing = storage.renditions(self.ctx.minio, bucket, settings.rendition_prefix, after)
        while self.summary.orphans_scanned < settings.orphan_scan_limit:
            left = settings.orphan_scan_limit - self.summary.orphans_scanned
            listed = await self.ctx.run_blocking(
                storage.take, listing, min(storage.DELETE_LIMIT, left)
            )
            if not listed:
                after = ""  # the end of the bucket: the next run starts over
                break
            self.summary.orphans_scanned += len(listed)
            after = listed[-1][0]
            old = {(bucket, key) for key, modified in listed if modified and modified <= cutoff}
            orphans = old - await records.referenced(self.images, old)
            failed = await self._delete(orphans)
            self.summary.orphans_deleted += len(orphans) - len(failed)
            if self.dry_run and orphans:
                log.info("would delete orphans", extra={"objects": sorted(k for _, k in orphans)})
        if not self.dry_run:
            await records.save_sweep_position(state, sweep, after, self.now)

    async def _idempotency_records(self) -> None:
        """fnkit's records of handled events: kept long enough to absorb any redelivery."""
        records = self.ctx.db[IDEMPOTENCY_COLLECTION]
        before = self.settings.idempotency_cutoff(self.now)
        if self.dry_run:
            counts = [await records.count_documents(f) for f in stale_filters(before)]
            self.summary.idempotency_records_deleted = sum(counts)
        else:
            self.summary.idempotency_records_deleted = await prune(records, before)
