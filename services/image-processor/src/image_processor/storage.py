"""Reading originals from and writing renditions to MinIO (blocking: run in the thread pool)."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Final

from fnkit import Unavailable
from minio import Minio
from minio.error import S3Error

from image_processor.imaging import ImageRejected

_CHUNK: Final = 256 * 1024
_GONE: Final = frozenset({"NoSuchKey", "NoSuchBucket", "NoSuchVersion"})


class SourceGone(Exception):
    """The object of the event is not there any more, or was replaced since: nothing to do."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def fetch(minio: Minio, bucket: str, key: str, etag: str, limit: int) -> bytes:
    """The object's bytes, streamed and cut off past `limit`, if it still has `etag`."""
    try:
        # If-Match: a later upload to the same key is processed by its own event.
        response = minio.get_object(bucket, key, request_headers={"If-Match": f'"{etag}"'})
    except S3Error as exc:
        if exc.code in _GONE:
            raise SourceGone("missing", f"{bucket}/{key} no longer exists") from None
        if exc.code == "PreconditionFailed":
            raise SourceGone("superseded", f"{bucket}/{key} changed since the event") from None
        raise Unavailable(f"cannot read {bucket}/{key}: {exc.code}: {exc.message}") from exc
    try:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ImageRejected("too_large", f"{declared} bytes exceeds the limit of {limit}")
        data = bytearray()
        for chunk in response.stream(_CHUNK):
            data += chunk
            if len(data) > limit:
                raise ImageRejected("too_large", f"more than the limit of {limit} bytes")
        return bytes(data)
    finally:
        response.close()
        response.release_conn()


def store(
    minio: Minio,
    bucket: str,
    key: str,
    data: bytes,
    content_type: str,
    metadata: Mapping[str, str],
) -> str:
    """Write one rendition; returns its ETag."""
    try:
        result = minio.put_object(
            bucket,
            key,
            io.BytesIO(data),
            len(data),
            content_type=content_type,
            metadata=dict(metadata),
        )
    except S3Error as exc:
        raise Unavailable(f"cannot write {bucket}/{key}: {exc.code}: {exc.message}") from exc
    return str(result.etag)
