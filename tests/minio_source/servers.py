"""A MinIO server of its own whose webhook target is a minio-source on a known port."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from devplane.servers import MinioServer, minio_server
from minio_source.config import Settings
from pydantic import SecretStr

TARGET_ID = "PLAYBOOK"
TOKEN = "e2e-webhook-token"


def webhook_minio(root: Path, source_port: int, **extra_env: str) -> MinioServer:
    """MinIO notifying http://127.0.0.1:<source_port>/minio/webhook, queueing in `root`."""
    return minio_server(
        root,
        env={
            **extra_env,
            f"MINIO_NOTIFY_WEBHOOK_ENABLE_{TARGET_ID}": "on",
            f"MINIO_NOTIFY_WEBHOOK_ENDPOINT_{TARGET_ID}": (
                f"http://127.0.0.1:{source_port}/minio/webhook"
            ),
            f"MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_{TARGET_ID}": TOKEN,
            f"MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_{TARGET_ID}": str(root / "webhook-queue"),
        },
    )


def source_env(server: MinioServer, **extra: str) -> dict[str, str]:
    """Environment of minio-source and its setup command for `server`."""
    return {
        "ENVIRONMENT": "dev",
        "MINIO_ENDPOINT": server.endpoint,
        "MINIO_ACCESS_KEY": server.access_key,
        "MINIO_SECRET_KEY": server.secret_key,
        "WEBHOOK_AUTH_TOKEN": TOKEN,
        "NOTIFY_TARGET_ID": TARGET_ID,
        **extra,
    }


def run_setup(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m minio_source.setup`, as compose, make dev and the chart's hook Job run it."""
    return subprocess.run(
        [sys.executable, "-m", "minio_source.setup", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def setup_settings(server: MinioServer, **overrides: Any) -> Settings:
    """Settings of the setup command for `server`, for calling it in-process."""
    values: dict[str, Any] = {
        "environment": "dev",
        "minio_endpoint": server.endpoint,
        "minio_access_key": server.access_key,
        "minio_secret_key": SecretStr(server.secret_key),
        "notify_target_id": TARGET_ID,
    }
    return Settings(**{**values, **overrides})
