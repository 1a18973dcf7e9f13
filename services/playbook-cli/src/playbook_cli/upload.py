"""`playbook upload`: put an image into the uploads bucket and wait for its renditions.

The wait reads image-processor's record of the upload (`GET /images/{bucket}/{key}`) until
one exists for exactly the uploaded version (its ETag): an older upload of the same key does
not count.
"""

from __future__ import annotations

import argparse
import mimetypes
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from playbook_cli.endpoints import Endpoints, Unreachable, request
from playbook_cli.output import Output, table

IMAGE_PROCESSOR = "image-processor"


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "upload",
        help="upload an image and wait for its renditions",
        description="Upload FILE to MinIO's uploads bucket (as a user or an app would), then "
        "wait until image-processor has processed that very upload and print its renditions, "
        "or why it was rejected. Exit status 1 when rejected or not processed in time.",
    )
    parser.add_argument("file", type=Path, help="the image to upload")
    parser.add_argument("--key", help="object key (default: the file's name)")
    parser.add_argument("--bucket", default="uploads", help="bucket (%(default)s)")
    parser.add_argument(
        "--wait",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="how long to wait for the result (%(default)s; 0: do not wait)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, endpoints: Endpoints, out: Output) -> int:
    path: Path = args.file
    if not path.is_file():
        raise SystemExit(f"playbook upload: no such file: {path}")
    key = args.key or path.name
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    # Imported here: the MinIO client costs every other command a second to import.
    from minio import Minio
    from minio.error import S3Error
    from urllib3.exceptions import HTTPError as Urllib3Error

    minio = Minio(
        endpoints.minio,
        access_key=endpoints.minio_access_key,
        secret_key=endpoints.minio_secret_key,
        secure=endpoints.minio_secure,
    )
    try:
        result = minio.fput_object(args.bucket, key, str(path), content_type=content_type)
    except S3Error as exc:
        raise SystemExit(
            f"playbook upload: MinIO refused the upload: {exc.code}: {exc.message}"
        ) from None
    except (Urllib3Error, OSError) as exc:
        raise Unreachable(
            f"MinIO at {endpoints.minio} did not answer ({exc}); set PLAYBOOK_MINIO "
            "(and PLAYBOOK_MINIO_ACCESS_KEY / PLAYBOOK_MINIO_SECRET_KEY)"
        ) from exc
    etag = str(result.etag).strip('"')
    size = path.stat().st_size
    out.line(f"uploaded {args.bucket}/{key} ({size} bytes, {content_type}, etag {etag})")
    if args.wait <= 0:
        out.record({"bucket": args.bucket, "key": key, "etag": etag, "status": "uploaded"}, "")
        return 0
    out.note(f"waiting for {IMAGE_PROCESSOR} (up to {args.wait:g}s)...")
    record = _wait_for_record(endpoints, args.bucket, key, etag, args.wait)
    if record is None:
        out.record(
            {"bucket": args.bucket, "key": key, "etag": etag, "status": "pending"},
            f"not processed within {args.wait:g}s; check `playbook events tail` and "
            f"`playbook dlq list`",
        )
        return 1
    out.record(record, _describe(record))
    return 0 if record.get("status") == "processed" else 1


def _wait_for_record(
    endpoints: Endpoints, bucket: str, key: str, etag: str, within: float
) -> dict[str, Any] | None:
    deadline = time.monotonic() + within
    delay = 0.2
    with endpoints.client(IMAGE_PROCESSOR) as client:
        while True:
            response = request(client, "GET", f"/images/{quote(bucket)}/{quote(key, safe='/')}")
            if response.status_code == 200:
                record: dict[str, Any] = response.json()
                if record.get("etag") == etag:
                    return record
            elif response.status_code != 404:
                raise Unreachable(
                    f"{IMAGE_PROCESSOR} answered {response.status_code}: {response.text[:300]}"
                )
            if time.monotonic() + delay > deadline:
                return None
            time.sleep(delay)
            delay = min(delay * 1.5, 2.0)


def _describe(record: dict[str, Any]) -> str:
    where = f"{record.get('bucket')}/{record.get('key')}"
    if record.get("status") != "processed":
        return f"rejected {where}: {record.get('reason')} ({record.get('detail')})"
    source = record.get("source", {})
    lines = [
        f"processed {where}: {source.get('format')} {source.get('width')}x"
        f"{source.get('height')}, {len(record.get('renditions', []))} renditions"
    ]
    rows = [
        [
            str(r["name"]),
            f"{r['width']}x{r['height']}",
            str(r["bytes"]),
            "yes" if r.get("watermarked") else "no",
            f"{r['bucket']}/{r['key']}",
        ]
        for r in record.get("renditions", [])
    ]
    lines.append(table(rows, ["RENDITION", "SIZE", "BYTES", "WATERMARK", "OBJECT"]))
    return "\n".join(lines)
