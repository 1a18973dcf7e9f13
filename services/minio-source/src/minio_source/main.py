"""The minio-source function: `fnkit-serve minio_source.main:app`."""

from __future__ import annotations

from fnkit import Function
from fnkit.rest import install as install_rest

from minio_source.api.routes.webhook import router
from minio_source.config import Settings


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
    install_rest(fn.api, max_body_bytes=lambda: fn.settings.max_event_bytes)
    fn.api.include_router(router)
    return fn


app = create_app()
