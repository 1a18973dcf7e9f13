"""Publishing a notification's records to the broker."""

from __future__ import annotations

from typing import Any

from fnkit import Context

from minio_source.notifications import S3Record


async def forward(ctx: Context[Any], records: list[S3Record]) -> list[str]:
    """Emit one CloudEvent per record, in order; EmitError (503) when the broker refuses one.

    A refusal fails the whole notification, so MinIO redelivers all of it; the records that
    did get through are sent again with the same ids, which consumers deduplicate.
    """
    ids = []
    for record in records:
        event = ctx.event(
            record.event_type,
            record.raw,
            subject=record.subject,
            id=record.event_id,
            time=record.event_time,
            bucket=record.bucket,
            key=record.key,
        )
        await ctx.emit(event)
        ids.append(record.event_id)
    return ids
