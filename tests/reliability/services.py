"""Every deployable HTTP service, found the way the chart finds them, started as a process.

New functions in the chart's values are covered as soon as their package exists: the hostile
input suite iterates over this list and over each service's own OpenAPI document.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from devplane.servers import FunctionProcess, MinioServer, MongoServer, free_port

REPO = Path(__file__).resolve().parents[2]
# A distinctive value, so that tests can grep logs and answers for it.
WEBHOOK_TOKEN = "webhook-token-P9wd"


def deployables() -> dict[str, str]:
    """name -> ASGI module of every chart function whose package is installed, and devplane."""
    values = yaml.safe_load((REPO / "charts/knative-playbook/values.yaml").read_text())
    found = {
        name: spec["module"]
        for name, spec in values["functions"].items()
        if spec.get("module")
        and importlib.util.find_spec(spec["module"].split(".", 1)[0]) is not None
    }
    return {**found, "devplane": "devplane.main:app"}


def service_environment(
    mongo: MongoServer, minio: MinioServer, db: str, sink: str
) -> dict[str, str]:
    return {
        "ENVIRONMENT": "dev",
        "MONGO_URL": mongo.url,
        "MONGO_DB": db,
        "MONGO_TIMEOUT_SECONDS": "2",
        "MINIO_ENDPOINT": minio.endpoint,
        "MINIO_ACCESS_KEY": minio.access_key,
        "MINIO_SECRET_KEY": minio.secret_key,
        "WEBHOOK_AUTH_TOKEN": WEBHOOK_TOKEN,
        "K_SINK": sink,
        "DEVPLANE_CRON": "false",
        "EMIT_ATTEMPTS": "1",
    }


def started(name: str, module: str, root: Path, env: dict[str, str]) -> Iterator[FunctionProcess]:
    port = free_port()
    extra: dict[str, Any] = {}
    if name == "devplane":
        extra = {"DEVPLANE_URL": f"http://127.0.0.1:{port}"}
    process = FunctionProcess(
        name, port, root, env={**env, **extra}, module=module, log_path=root / f"{name}.log"
    )
    process.start()
    try:
        process.wait_ready(timeout=60)
        yield process
    finally:
        process.stop()
