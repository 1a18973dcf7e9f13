"""Give each function its own MinIO user, allowed only the buckets it needs.

Run by the chart's `minio-users` hook Job in the minio-source image (any image with the
`minio` package will do), after every install and upgrade; idempotent. Input:
- `MINIO_ENDPOINT`, `MINIO_SECURE`, `MINIO_REGION`, `MINIO_ACCESS_KEY`, `MINIO_SECRET_KEY`:
  an admin of the MinIO server;
- `MINIO_USERS_CONFIG`: a JSON file `{"users": [{"accessKey": "image-processor",
  "secretKeyEnv": "SECRET_KEY_IMAGE_PROCESSOR", "buckets": {"uploads": "read"}}]}`, where each
  secret key comes from the environment variable named by `secretKeyEnv` (from the
  function's own Secret), and access is `read`, `write` or `readwrite`.
Each user gets one policy of its own name, replaced on every run, so removing a bucket from
a function's values removes the access too.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any, Final

from minio.credentials.providers import StaticProvider
from minio.error import MinioAdminException
from minio.minioadmin import MinioAdmin
from urllib3.exceptions import HTTPError

log = logging.getLogger("minio-users")

READ_OBJECT: Final = ["s3:GetObject"]
READ_BUCKET: Final = ["s3:ListBucket", "s3:GetBucketLocation"]
WRITE_OBJECT: Final = [
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
]
WRITE_BUCKET: Final = ["s3:ListBucketMultipartUploads"]
ACCESS_LEVELS: Final = ("read", "write", "readwrite")


def policy(buckets: dict[str, str]) -> dict[str, Any]:
    """An IAM policy allowing exactly `buckets` at their access level, nothing else."""
    statements: list[dict[str, Any]] = []
    for bucket, access in sorted(buckets.items()):
        if access not in ACCESS_LEVELS:
            raise ValueError(
                f"bucket {bucket}: access must be one of {ACCESS_LEVELS}, not {access!r}"
            )
        bucket_actions: list[str] = []
        object_actions: list[str] = []
        if "read" in access:
            bucket_actions += READ_BUCKET
            object_actions += READ_OBJECT
        if "write" in access:
            bucket_actions += WRITE_BUCKET
            object_actions += WRITE_OBJECT
        statements.append(
            {"Effect": "Allow", "Action": bucket_actions, "Resource": [f"arn:aws:s3:::{bucket}"]}
        )
        statements.append(
            {"Effect": "Allow", "Action": object_actions, "Resource": [f"arn:aws:s3:::{bucket}/*"]}
        )
    return {"Version": "2012-10-17", "Statement": statements}


def apply(admin: MinioAdmin, users: list[dict[str, Any]], env: dict[str, str]) -> list[str]:
    """Create or update every user and its policy; returns the access keys handled."""
    done = []
    for user in users:
        access_key = user["accessKey"]
        secret_key = env.get(user["secretKeyEnv"], "")
        if len(secret_key) < 8:
            raise ValueError(f"{user['secretKeyEnv']}: no secret key (8 characters at least)")
        if not user["buckets"]:
            continue
        admin.policy_add(access_key, policy=policy(user["buckets"]))
        # user_add also resets the secret key, so a rotated Secret takes effect here.
        admin.user_add(access_key, secret_key)
        try:
            admin.attach_policy([access_key], user=access_key)
        except MinioAdminException as exc:
            # Attaching a policy that is already attached is refused; that is the goal state.
            if "already" not in str(exc).lower():
                raise
        done.append(access_key)
    return done


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="minio-users: %(message)s")
    with open(os.environ["MINIO_USERS_CONFIG"], encoding="utf-8") as stream:
        users = json.load(stream)["users"]
    admin = MinioAdmin(
        endpoint=os.environ["MINIO_ENDPOINT"],
        credentials=StaticProvider(os.environ["MINIO_ACCESS_KEY"], os.environ["MINIO_SECRET_KEY"]),
        region=os.environ.get("MINIO_REGION", ""),
        secure=os.environ.get("MINIO_SECURE", "false").lower() == "true",
    )
    deadline = time.monotonic() + float(os.environ.get("WAIT_SECONDS", "300"))
    while True:
        try:
            done = apply(admin, users, dict(os.environ))
        except (HTTPError, OSError) as exc:
            if time.monotonic() >= deadline:
                log.error("MinIO at %s is not usable: %s", os.environ["MINIO_ENDPOINT"], exc)
                return 1
            log.info("waiting for MinIO (%s)", type(exc).__name__)
            time.sleep(2.0)
            continue
        log.info("users set up: %s", ", ".join(done) or "none")
        return 0


if __name__ == "__main__":
    sys.exit(main())
