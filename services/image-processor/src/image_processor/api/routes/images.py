"""Look up what became of an upload."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fnkit import ContextDep, NotFound

from image_processor import records

router = APIRouter(prefix="/images", tags=["images"])


@router.get(
    "/{bucket}/{key:path}",
    summary="The latest record of an upload: its renditions, or why it was rejected.",
    responses={404: {"description": "No event for this object has been processed."}},
)
async def get_image(bucket: str, key: str, ctx: ContextDep) -> dict[str, Any]:
    document = await records.latest(ctx.db[ctx.settings.images_collection], bucket, key)
    if document is None:
        raise NotFound(f"no record of {bucket}/{key}")
    return document
