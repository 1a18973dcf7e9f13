"""`python -m minio_source.setup`: create the buckets and the uploads bucket's notification.

Idempotent, so compose, `make dev` and the chart's hook Job run it on every start. The
webhook target itself is configured on the MinIO server by environment variables
(`MINIO_NOTIFY_WEBHOOK_ENABLE_<ID>=on`, `..._ENDPOINT_<ID>`, `..._AUTH_TOKEN_<ID>`,
`..._QUEUE_DIR_<ID>`); this command only points the bucket at it, as
`arn:minio:sqs::<ID>:webhook`. Other notification rules on the bucket are kept.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Final

import urllib3
from minio import Minio
from minio.error import S3Error
from minio.notificationconfig import NotificationConfig, QueueConfig
from urllib3.exceptions import HTTPError

from minio_source.config import Settings

CONFIG_ID: Final = "knative-playbook-minio-source"

log = logging.getLogger("minio_source.setup")


class SetupError(RuntimeError):
    """MinIO refused the configuration; retrying will not help."""


class UnknownTarget(SetupError):
    """MinIO does not know the webhook target (yet).

    MinIO answers requests before it has loaded its notification targets (it loads them in
    the background after start-up), so right after a start this is worth retrying for a
    while; after that it means the target is not configured.
    """


def client(settings: Settings) -> Minio:
    # A short connect timeout: an unreachable MinIO is retried by `main`, not waited on.
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=2.0, read=30.0),
        retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=(502, 503, 504)),
    )
    return Minio(
        settings.minio_endpoint,
        access_key=settings.minio_access_key,
        secret_key=settings.minio_secret_key.get_secret_value(),
        secure=settings.minio_secure,
        region=settings.minio_region,
        http_client=http,
    )


def ensure_bucket(minio: Minio, bucket: str) -> bool:
    """Create `bucket` unless it exists; True when it was created."""
    if minio.bucket_exists(bucket):
        return False
    try:
        minio.make_bucket(bucket)
    except S3Error as exc:
        if exc.code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            return False  # created by a concurrent run
        raise
    return True


def ensure_notification(minio: Minio, bucket: str, arn: str, events: list[str]) -> bool:
    """Send `events` of `bucket` to `arn`; True when the configuration changed."""
    current = minio.get_bucket_notification(bucket)
    ours = QueueConfig(queue=arn, events=sorted(events), config_id=CONFIG_ID)
    # MinIO refuses two rules for the same target with overlapping events: ours replaces them.
    others = [q for q in current.queue_config_list if q.config_id != CONFIG_ID and q.queue != arn]
    existing = [q for q in current.queue_config_list if q.config_id == CONFIG_ID or q.queue == arn]
    if len(existing) == 1 and _same(existing[0], ours):
        return False
    try:
        minio.set_bucket_notification(
            bucket,
            NotificationConfig(
                cloud_func_config_list=current.cloud_func_config_list,
                queue_config_list=[*others, ours],
                topic_config_list=current.topic_config_list,
            ),
        )
    except S3Error as exc:
        if exc.code == "InvalidArgument":
            raise UnknownTarget(
                f"MinIO does not know the webhook target {arn}: start MinIO with "
                "MINIO_NOTIFY_WEBHOOK_ENABLE_<ID>=on and MINIO_NOTIFY_WEBHOOK_ENDPOINT_<ID> "
                f"(<ID> as in NOTIFY_TARGET_ID) ({exc.message})"
            ) from exc
        raise
    return True


def _same(a: QueueConfig, b: QueueConfig) -> bool:
    return (a.queue, sorted(a.events), a.config_id, a.prefix_filter_rule, a.suffix_filter_rule) == (
        b.queue,
        sorted(b.events),
        b.config_id,
        b.prefix_filter_rule,
        b.suffix_filter_rule,
    )


def run(settings: Settings) -> list[str]:
    """Apply the whole configuration once; returns what changed."""
    minio = client(settings)
    changes = []
    for bucket in dict.fromkeys((settings.uploads_bucket, settings.processed_bucket)):
        if ensure_bucket(minio, bucket):
            changes.append(f"created bucket {bucket}")
    if ensure_notification(
        minio, settings.uploads_bucket, settings.notify_arn, settings.notify_events
    ):
        events = ", ".join(settings.notify_events)
        changes.append(f"{settings.uploads_bucket}: {events} -> {settings.notify_arn}")
    return changes


def apply(settings: Settings, wait: float) -> list[str]:
    """`run`, retried for up to `wait` seconds while MinIO is unreachable or still starting.

    Raises SetupError when MinIO refuses the configuration, or the last error once the
    wait is over.
    """
    deadline = time.monotonic() + wait
    while True:
        try:
            return run(settings)
        except (UnknownTarget, HTTPError, S3Error, OSError) as exc:
            if time.monotonic() >= deadline:
                raise
            endpoint = settings.minio_endpoint
            if isinstance(exc, UnknownTarget):
                log.info("MinIO at %s has not loaded %s yet", endpoint, settings.notify_arn)
            else:
                log.info("waiting for MinIO at %s (%s)", endpoint, type(exc).__name__)
            time.sleep(1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="minio-source-setup",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="keep retrying while MinIO is unreachable or still loading its targets (default 60)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="minio-source-setup: %(message)s")
    settings = Settings()
    try:
        changes = apply(settings, args.wait)
    except SetupError as exc:
        log.error("%s", exc)
        return 1
    except (HTTPError, S3Error, OSError) as exc:
        log.error("MinIO at %s is not usable: %s", settings.minio_endpoint, exc)
        return 1
    for change in changes:
        log.info("%s", change)
    log.info(
        "MinIO at %s is set up%s",
        settings.minio_endpoint,
        "" if changes else " (nothing to change)",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
