"""The image-processor function: `fnkit-serve image_processor.main:app`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fnkit import Context, Function

from image_processor import records
from image_processor.config import Settings
from image_processor.processor import OBJECT_CREATED, ImageProcessor

if TYPE_CHECKING:
    from fastapi import FastAPI


async def create_indexes(ctx: Context[Settings]) -> None:
    await records.create_indexes(ctx.db[ctx.settings.images_collection])


def create_app(settings: Settings | None = None) -> Function[Settings]:
    fn = Function(
        "image-processor",
        settings_class=Settings,
        settings=settings,
        mongo=True,
        minio=True,
        description=(
            "Object-created events of the uploads bucket -> EXIF-oriented, resized, "
            "watermarked renditions in the processed bucket, a MongoDB record and an "
            "image.processed (or image.rejected) reply."
        ),
    )
    fn.on(*OBJECT_CREATED)(ImageProcessor().handle)
    fn.on_startup(create_indexes)

    @fn.rest
    def routes(api: FastAPI) -> None:
        from image_processor.api.routes.images import router

        api.include_router(router)

    return fn


app = create_app()
