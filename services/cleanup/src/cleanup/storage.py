"""MinIO operations of a cleanup run (blocking: run them in the thread pool).

Errors fall in two kinds. MinIO itself unreachable or failing (connection refused, 5xx after
the client's retries) raises MinioUnavailable: the run stops, and the next one carries on. A
refusal about one object (AccessDenied, say) is that object's failure, and the run goes on.
An object that does not exist, or whose bucket does not, counts as deleted.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from datetime import datetime
from enum import Enum
from typing import Final

from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import MinioException, S3Error
from urllib3.exceptions import HTTPError

GONE: Final = frozenset({"NoSuchKey", "NoSuchBucket", "NoSuchVersion"})
DELETE_LIMIT: Final = 1000  # keys per DeleteObjects request (the S3 limit)


class MinioUnavailable(Exception):
    """MinIO did not answer, or failed as a whole: nothing more can be done this run."""


class Original(Enum):
    """What is at an upload's key now, compared with the record's ETag."""

    CURRENT = "current"  # the upload the record describes
    MISSING = "missing"  # nothing: deleted before (by a user, or by a run that was cut off)
    REPLACED = "replaced"  # a newer upload to the same key, which owns the renditions now


def _unavailable(exc: Exception) -> bool:
    if isinstance(exc, S3Error):
        return exc.response.status >= 500
    return isinstance(exc, MinioException | HTTPError | OSError)


def original(minio: Minio, bucket: str, key: str, etag: str) -> Original:
    """Whether the upload the record describes is still there (S3Error for a refusal)."""
    try:
        stat = minio.stat_object(bucket, key)
    except S3Error as exc:
        if exc.code in GONE:
            return Original.MISSING
        if _unavailable(exc):
            raise MinioUnavailable(f"HEAD {bucket}/{key}: {exc.code}") from exc
        raise
    except (MinioException, HTTPError, OSError) as exc:
        raise MinioUnavailable(f"HEAD {bucket}/{key}: {exc}") from exc
    return Original.CURRENT if (stat.etag or "").strip('"') == etag else Original.REPLACED


def remove(minio: Minio, bucket: str, keys: Sequence[str]) -> dict[str, str]:
    """Batch-delete `keys`; returns the ones not confirmed gone, with MinIO's error code."""
    failed: dict[str, str] = {}
    for start in range(0, len(keys), DELETE_LIMIT):
        # One request per call to remove_objects, so that an error raised by a later request
        # cannot hide which keys an earlier one deleted.
        chunk = keys[start : start + DELETE_LIMIT]
        try:
            errors = list(minio.remove_objects(bucket, [DeleteObject(key) for key in chunk]))
        except S3Error as exc:
            if exc.code in GONE:
                continue
            if _unavailable(exc):
                raise MinioUnavailable(f"delete in {bucket}: {exc.code}") from exc
            failed.update(dict.fromkeys(chunk, exc.code or "S3Error"))
            continue
        except (MinioException, HTTPError, OSError) as exc:
            raise MinioUnavailable(f"delete in {bucket}: {exc}") from exc
        for error in errors:
            if error.name is not None and error.code not in GONE:
                failed[error.name] = error.code
    return failed


def renditions(
    minio: Minio, bucket: str, prefix: str, after: str
) -> Iterator[tuple[str, datetime | None]]:
    """(key, last modified) of the objects under `prefix`, in key order, after `after`."""
    listing = minio.list_objects(bucket, prefix=prefix, recursive=True, start_after=after or None)
    return ((obj.object_name or "", obj.last_modified) for obj in listing if not obj.is_dir)


def take(
    listing: Iterator[tuple[str, datetime | None]], limit: int
) -> list[tuple[str, datetime | None]]:
    """Up to `limit` more entries of a listing (each page of it is one LIST request)."""
    try:
        return list(itertools.islice(listing, limit))
    except S3Error as exc:
        if exc.code == "NoSuchBucket":
            return []
        # Refused or failing, the sweep cannot go on either way.
        raise MinioUnavailable(f"cannot list renditions: {exc.code}") from exc
    except (MinioException, HTTPError, OSError) as exc:
        raise MinioUnavailable(f"cannot list renditions: {exc}") from exc
