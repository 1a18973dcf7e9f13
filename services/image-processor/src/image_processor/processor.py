"""Object-created event -> renditions in the processed bucket, a record, a reply event.

Outcomes, and what the broker makes of them:
- renditions written and recorded -> 200 with `image.processed.v1`;
- the upload cannot become an image (empty, not an image, truncated, a decompression bomb,
  an unsupported format, too large) -> recorded, 200 with `image.rejected.v1`: permanent,
  so never retried;
- the object is gone or was replaced since the event -> 200 with `image.rejected.v1`
  (`missing` / `superseded`), not recorded: the replacement has an event of its own;
- MinIO or MongoDB unreachable -> 503, and the broker retries.

Work is done once per (bucket, key, ETag): a redelivery, or the same bytes uploaded again
under the same key, gets the first reply without running again, for as long as the record
of the first run exists (the cleanup job removes it with the renditions when it expires).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote, unquote_plus

from fnkit import CloudEvent, Context, Rejected, event_data
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field

from image_processor import records, storage
from image_processor.config import Settings
from image_processor.imaging import ImageRejected, Pipeline, Rendered, SourceInfo, render
from image_processor.naming import rendition_key

IMAGE_PROCESSED: Final = "io.knative-playbook.image.processed.v1"
IMAGE_REJECTED: Final = "io.knative-playbook.image.rejected.v1"
OBJECT_CREATED: Final = tuple(
    f"io.minio.s3.ObjectCreated.{name}"
    for name in ("Put", "Post", "Copy", "CompleteMultipartUpload")
)

UPLOADS = Counter(
    "image_processor_uploads_total",
    "Uploads handled, by outcome: processed, rejected (bad input), skipped (the object is "
    "gone or was replaced), duplicate (handled before; the first reply was returned).",
    ["outcome"],
)


class _Bucket(BaseModel):
    name: str = Field(min_length=3, max_length=63)


class _Object(BaseModel):
    key: str = Field(min_length=1, max_length=4096)
    eTag: str = Field(min_length=1, max_length=128, pattern=r'^"?[0-9A-Za-z-]+"?$')
    size: int = Field(default=0, ge=0)


class _S3(BaseModel):
    bucket: _Bucket
    object: _Object


class ObjectCreated(BaseModel):
    """The part of MinIO's S3 record (the event's data) that says which object to process."""

    model_config = ConfigDict(extra="ignore")

    s3: _S3

    @property
    def bucket(self) -> str:
        return self.s3.bucket.name

    @property
    def key(self) -> str:
        return unquote_plus(self.s3.object.key)  # form-encoded by MinIO

    @property
    def etag(self) -> str:
        return self.s3.object.eTag.strip('"')


class ImageProcessor:
    """The handler, with what it keeps between events: the pipeline and a decode limit."""

    def __init__(self) -> None:
        self._pipeline: Pipeline | None = None
        self._slots: asyncio.Semaphore | None = None

    async def handle(self, event: CloudEvent, ctx: Context[Settings]) -> CloudEvent | None:
        upload = ObjectCreated.model_validate(event_data(event))
        settings = ctx.settings
        if upload.bucket != settings.uploads_bucket:
            raise Rejected(
                f"bucket {upload.bucket!r} is not processed here "
                f"(UPLOADS_BUCKET={settings.uploads_bucket!r})"
            )
        identity = f"image\x1f{upload.bucket}\x1f{upload.key}\x1f{upload.etag}"
        reply, ran = await ctx.once(identity, lambda: self._process(upload, event, ctx))
        if ran:
            return reply
        images = ctx.db[settings.images_collection]
        if await records.exists(images, upload.bucket, upload.key, upload.etag):
            UPLOADS.labels("duplicate").inc()
            return reply
        # Handled before, but its record has expired and been cleaned up since (or was never
        # kept): the same bytes uploaded again deserve renditions again.
        return await self._process(upload, event, ctx)

    async def _process(
        self, upload: ObjectCreated, event: CloudEvent, ctx: Context[Settings]
    ) -> CloudEvent:
        settings = ctx.settings
        if self._pipeline is None or self._slots is None:
            self._pipeline = settings.pipeline()
            self._slots = asyncio.Semaphore(settings.image_concurrency)
        limit = settings.max_source_bytes
        if upload.s3.object.size > limit:
            too_large = f"{upload.s3.object.size} bytes exceeds the limit of {limit}"
            return await self._rejected(ctx, upload, event, ImageRejected("too_large", too_large))
        async with self._slots:
            try:
                data = await ctx.run_blocking(
                    storage.fetch, ctx.minio, upload.bucket, upload.key, upload.etag, limit
                )
                source, renditions = await ctx.run_blocking(render, data, self._pipeline)
            except storage.SourceGone as gone:
                UPLOADS.labels("skipped").inc()
                reason = {"reason": gone.reason, "detail": gone.detail}
                return _reply(ctx, IMAGE_REJECTED, upload, reason)
            except ImageRejected as rejection:
                return await self._rejected(ctx, upload, event, rejection)
        return await self._processed(ctx, upload, event, source, len(data), renditions)

    async def _processed(
        self,
        ctx: Context[Settings],
        upload: ObjectCreated,
        event: CloudEvent,
        source: SourceInfo,
        size: int,
        renditions: list[Rendered],
    ) -> CloudEvent:
        settings = ctx.settings
        bucket = settings.processed_bucket
        keys = [
            rendition_key(settings.processed_prefix, upload.key, r.name, r.extension)
            for r in renditions
        ]
        await asyncio.gather(
            *(
                ctx.run_blocking(
                    storage.store,
                    ctx.minio,
                    bucket,
                    key,
                    r.data,
                    r.content_type,
                    _metadata(upload, r),
                )
                for key, r in zip(keys, renditions, strict=True)
            )
        )
        listed = [
            {
                "name": r.name,
                "bucket": bucket,
                "key": key,
                "content_type": r.content_type,
                "width": r.width,
                "height": r.height,
                "bytes": len(r.data),
                "watermarked": r.watermarked,
            }
            for key, r in zip(keys, renditions, strict=True)
        ]
        described = {
            "source": {
                "format": source.format,
                "width": source.width,
                "height": source.height,
                "mode": source.mode,
                "orientation": source.orientation,
                "animated": source.animated,
                "bytes": size,
            },
            "renditions": listed,
        }
        times = await _record(ctx, upload, event, records.PROCESSED, described)
        UPLOADS.labels("processed").inc()
        return _reply(ctx, IMAGE_PROCESSED, upload, {**described, **times})

    async def _rejected(
        self,
        ctx: Context[Settings],
        upload: ObjectCreated,
        event: CloudEvent,
        rejection: ImageRejected,
    ) -> CloudEvent:
        reason = {"reason": rejection.reason, "detail": rejection.detail}
        times = await _record(ctx, upload, event, records.REJECTED, {**reason, "renditions": []})
        UPLOADS.labels("rejected").inc()
        return _reply(ctx, IMAGE_REJECTED, upload, {**reason, **times})


async def _record(
    ctx: Context[Settings],
    upload: ObjectCreated,
    event: CloudEvent,
    status: str,
    fields: dict[str, Any],
) -> dict[str, str]:
    """Save the outcome; returns its processed and expiry times for the reply."""
    now = datetime.now(UTC)
    expires_at = now + ctx.settings.retention
    document = {
        **_identity(upload),
        **fields,
        "status": status,
        "event_id": event.get_id(),
        "processed_at": now,
        "expires_at": expires_at,
    }
    await records.save(ctx.db[ctx.settings.images_collection], document)
    return {"processed_at": now.isoformat(), "expires_at": expires_at.isoformat()}


def _reply(
    ctx: Context[Settings], event_type: str, upload: ObjectCreated, data: dict[str, Any]
) -> CloudEvent:
    return ctx.event(
        event_type,
        {**_identity(upload), **data},
        subject=f"{upload.bucket}/{upload.key}",
        bucket=upload.bucket,
        key=upload.key,
    )


def _identity(upload: ObjectCreated) -> dict[str, str]:
    return {"bucket": upload.bucket, "key": upload.key, "etag": upload.etag}


def _metadata(upload: ObjectCreated, rendition: Rendered) -> dict[str, str]:
    """User metadata of a rendition (x-amz-meta-*); header values must be ASCII."""
    return {
        "source-bucket": upload.bucket,
        "source-key": quote(upload.key, safe="/"),
        "source-etag": upload.etag,
        "rendition": rendition.name,
        "width": str(rendition.width),
        "height": str(rendition.height),
    }
