"""The chart's MinIO wiring, run with real processes: the environment the chart renders.

MinIO gets the StatefulSet's environment (webhook target, token, queue directory), the setup
hook Jobs run with their rendered environment, minio-source runs with its rendered
ConfigMap and token, and devplane stands in for the Broker (K_SINK). Only network addresses
and paths are replaced by local ones. An upload must arrive at the broker as a CloudEvent,
and each function's own MinIO user must reach exactly its buckets.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from devplane.servers import MinioServer, free_port, minio_server
from minio import Minio
from minio.error import S3Error

from tests.chart.helpers import NAMESPACE, Rendered, render

pytestmark = pytest.mark.integration

PREFIX = "kp-knative-playbook"
SOURCE_HOST = f"http://minio-source.{NAMESPACE}.svc.cluster.local"


def container_env(rendered: Rendered, container: dict[str, Any]) -> dict[str, str]:
    """The environment Kubernetes would give `container`, from the rendered objects."""
    env: dict[str, str] = {}

    def data(kind: str, name: str) -> dict[str, str]:
        obj = rendered.get(kind, name)
        return dict(obj.get("stringData") or obj.get("data") or {})

    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(data("ConfigMap", source["configMapRef"]["name"]))
        else:
            env.update(data("Secret", source["secretRef"]["name"]))
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], entry["value"])
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            env[entry["name"]] = data("Secret", ref["name"])[ref["key"]]
    return env


def first_container(rendered: Rendered, kind: str, name: str) -> dict[str, Any]:
    container: dict[str, Any] = rendered.get(kind, name)["spec"]["template"]["spec"]["containers"][
        0
    ]
    return container


def run_job(rendered: Rendered, name: str, env: dict[str, str], cwd: Path) -> str:
    container = first_container(rendered, "Job", f"{PREFIX}-{name}")
    command = [sys.executable if c == "python" else c for c in container["command"]]
    result = subprocess.run(
        command,
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


@pytest.fixture
def rendered() -> Rendered:
    return render()


@pytest.fixture
def platform(rendered, tmp_path, function_process, service_env):
    plane = function_process("devplane.main:app", name="devplane", env=service_env)
    source_ksvc = next(
        d
        for d in rendered.of("Service")
        if d["metadata"]["name"] == "minio-source" and "template" in d["spec"]
    )
    source_env = container_env(rendered, source_ksvc["spec"]["template"]["spec"]["containers"][0])
    minio_env = container_env(rendered, first_container(rendered, "StatefulSet", f"{PREFIX}-minio"))
    port = free_port()
    source = function_process(
        "minio_source.main:app",
        name="minio-source",
        port=port,
        env={**source_env, "MINIO_ENDPOINT": "unused:1", "K_SINK": plane.url + "/"},
    )
    endpoint = minio_env["MINIO_NOTIFY_WEBHOOK_ENDPOINT_PLAYBOOK"]
    assert endpoint.startswith(SOURCE_HOST)
    minio_env["MINIO_NOTIFY_WEBHOOK_ENDPOINT_PLAYBOOK"] = endpoint.replace(SOURCE_HOST, source.url)
    minio_env["MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_PLAYBOOK"] = str(tmp_path / "notify-queue")
    server: MinioServer = minio_server(tmp_path, env=minio_env)
    server.access_key, server.secret_key = (
        minio_env["MINIO_ROOT_USER"],
        minio_env["MINIO_ROOT_PASSWORD"],
    )
    server.start()
    yield plane, server
    server.stop()


def test_an_upload_reaches_the_broker_through_the_rendered_wiring(rendered, platform, tmp_path):
    plane, server = platform
    local = {"MINIO_ENDPOINT": server.endpoint}
    setup_env = container_env(rendered, first_container(rendered, "Job", f"{PREFIX}-minio-setup"))
    assert setup_env["ENVIRONMENT"] == "production"
    run_job(rendered, "minio-setup", {**setup_env, **local}, tmp_path)

    admin = Minio(server.endpoint, server.access_key, server.secret_key, secure=False)
    admin.put_object("uploads", "cat.jpg", io.BytesIO(b"jpeg"), 4)

    deadline = time.monotonic() + 30
    events: list[dict[str, Any]] = []
    while not events and time.monotonic() < deadline:
        response = httpx.get(
            f"{plane.url}/events", params={"type": "io.minio.s3.ObjectCreated.Put"}
        )
        events = response.json()["events"]
        time.sleep(0.2)
    assert events, "the upload never reached the broker"
    assert json.dumps(events[0]).count("uploads/cat.jpg") >= 1


def test_each_function_user_reaches_only_its_buckets(rendered, platform, tmp_path):
    _, server = platform
    local = {"MINIO_ENDPOINT": server.endpoint}
    setup_env = container_env(rendered, first_container(rendered, "Job", f"{PREFIX}-minio-setup"))
    run_job(rendered, "minio-setup", {**setup_env, **local}, tmp_path)
    files = rendered.get("ConfigMap", f"{PREFIX}-minio-users")["data"]
    scripts = tmp_path / "opt"
    scripts.mkdir()
    for name, text in files.items():
        (scripts / name).write_text(text)
    users_env = container_env(rendered, first_container(rendered, "Job", f"{PREFIX}-minio-users"))
    users_env.update(local, MINIO_USERS_CONFIG=str(scripts / "users.json"))
    job = first_container(rendered, "Job", f"{PREFIX}-minio-users")
    command = [sys.executable, str(scripts / Path(job["command"][1]).name)]
    result = subprocess.run(
        command,
        env={**os.environ, **users_env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr

    admin = Minio(server.endpoint, server.access_key, server.secret_key, secure=False)
    admin.put_object("uploads", "dog.jpg", io.BytesIO(b"jpeg"), 4)
    ksvc = next(
        d
        for d in rendered.of("Service")
        if d["metadata"]["name"] == "image-processor" and "template" in d["spec"]
    )
    fn_env = container_env(rendered, ksvc["spec"]["template"]["spec"]["containers"][0])
    fn = Minio(
        server.endpoint, fn_env["MINIO_ACCESS_KEY"], fn_env["MINIO_SECRET_KEY"], secure=False
    )
    assert fn.get_object("uploads", "dog.jpg").read() == b"jpeg"
    fn.put_object("processed", "dog/256.webp", io.BytesIO(b"w"), 1)
    with pytest.raises(S3Error) as refused:
        fn.put_object("uploads", "evil.jpg", io.BytesIO(b"x"), 1)
    assert refused.value.code == "AccessDenied"
