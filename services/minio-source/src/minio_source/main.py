"""The minio-source function: `fnkit-serve minio_source.main:app`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fnkit import Function

from minio_source.config import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI


def create_app(settings: Settings | None = None) -> Function[Settings]:
    fn = Function(
        "minio-source",
        settings_class=Settings,
        settings=settings,
        description=(
            "MinIO's webhook target: every S3 record of a bucket notification becomes a "
            "CloudEvent (type io.minio.s3.<EventName>) posted to K_SINK."
        ),
    )

    @fn.rest
    def routes(api: FastAPI) -> None:
        from fnkit.rest import install

        from minio_source.api.routes.webhook import router

        install(api, max_body_bytes=lambda: fn.settings.max_event_bytes)
        api.include_router(router)

    return fn


app = create_app()
