"""`make dev` (python -m devplane.dev) end to end, on free ports and the test servers."""

from __future__ import annotations

import io
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from devplane.servers import (
    MINIO_ROOT_PASSWORD,
    MINIO_ROOT_USER,
    MinioServer,
    MongoServer,
    free_port,
    port_open,
)
from minio import Minio
from PIL import Image

pytestmark = pytest.mark.e2e

ECHOED = "io.knative-playbook.test.echo-me.v1"
PROCESSED = "io.knative-playbook.image.processed.v1"


def test_make_dev_starts_devplane_and_installed_functions_and_ctrl_c_stops_them(
    tmp_path: Path, mongo_server: MongoServer, minio_server: MinioServer
) -> None:
    devplane_port, echo_port, ghost_port = free_port(), free_port(), free_port()
    extra = tmp_path / "dev-values.yaml"
    extra.write_text(
        yaml.safe_dump(
            {
                "cronJobs": {"cleanup": {"enabled": False}},
                "functions": {
                    "echo": {
                        "enabled": True,
                        "localPort": echo_port,
                        "module": "fnkit.echo:app",
                        "triggers": [
                            {"name": "echo-me", "filter": {"attributes": {"type": ECHOED}}}
                        ],
                    },
                    "ghost": {
                        "enabled": True,
                        "localPort": ghost_port,
                        "module": "ghost_fn.main:app",
                    },
                },
            }
        )
    )
    launcher = Launcher(
        tmp_path,
        extra,
        ["echo", "ghost"],
        devplane_port=devplane_port,
        mongo_port=mongo_server.port,
        minio_port=minio_server.port,
    )
    wait_line = launcher.wait_line

    try:
        assert "using it" in wait_line("mongodb:")
        assert "using it" in wait_line("minio:")
        wait_line("Ctrl-C stops everything")
        ready_echo = wait_line('"msg":"ready"')
        assert ready_echo.split("|")[0].strip() in ("devplane", "echo")
        _wait_ready(f"http://127.0.0.1:{devplane_port}")
        _wait_ready(f"http://127.0.0.1:{echo_port}")

        posted = httpx.post(
            f"http://127.0.0.1:{devplane_port}/",
            headers={
                "ce-specversion": "1.0",
                "ce-id": "dev-1",
                "ce-type": ECHOED,
                "ce-source": "/t",
                "content-type": "application/json",
            },
            content=b'{"hi": 1}',
        )
        assert posted.status_code == 202
        record = _settled(devplane_port, "dev-1")
        [delivery] = record["deliveries"]
        assert (delivery["subscriber"], delivery["outcome"]) == ("echo", "delivered")
        assert delivery["url"] == f"http://127.0.0.1:{echo_port}"
        assert delivery["reply_id"]  # echo replied; the reply went back through devplane

        assert launcher.interrupt() == 0
    finally:
        launcher.close()
    output = launcher.output()
    assert "minio: WARNING: a server not started here" not in output  # minio-source not wanted
    assert "minio-setup" not in output
    assert "ghost: ghost_fn.main:app is not installed (yet), not started" in output
    assert not port_open(devplane_port)
    assert not port_open(echo_port)
    assert port_open(mongo_server.port), "servers it did not start are left running"


def test_make_dev_wires_minio_to_minio_source_so_an_upload_becomes_renditions_and_an_event(
    tmp_path: Path, mongo_server: MongoServer, mongo_db_name: str
) -> None:
    devplane_port, source_port, processor_port, minio_port = (free_port() for _ in range(4))
    extra = tmp_path / "dev-values.yaml"
    extra.write_text(
        yaml.safe_dump(
            {
                "cronJobs": {"cleanup": {"enabled": False}},
                "functions": {
                    "minio-source": {"localPort": source_port},
                    "image-processor": {"localPort": processor_port},
                },
            }
        )
    )
    launcher = Launcher(
        tmp_path,
        extra,
        ["minio-source", "image-processor"],
        devplane_port=devplane_port,
        mongo_port=mongo_server.port,
        minio_port=minio_port,
        env={"MONGO_DB": mongo_db_name},
    )
    key = "dev/camera/IMG_0001.jpg"
    try:
        assert "ready on" in launcher.wait_line("minio:")
        assert "done" in launcher.wait_line("minio-setup: ")
        assert any("is set up" in line for line in launcher.seen)
        for port in (devplane_port, source_port, processor_port):
            _wait_ready(f"http://127.0.0.1:{port}")
        minio = Minio(f"127.0.0.1:{minio_port}", MINIO_ROOT_USER, MINIO_ROOT_PASSWORD, secure=False)
        photo = io.BytesIO()
        Image.new("RGB", (1600, 1200), (200, 40, 40)).save(photo, "JPEG")
        minio.put_object("uploads", key, io.BytesIO(photo.getvalue()), len(photo.getvalue()))

        processed = _logged(devplane_port, PROCESSED, f"uploads/{key}")
        renditions = sorted(
            o.object_name
            for o in minio.list_objects("processed", prefix="processed/dev/", recursive=True)
        )
        assert renditions == [
            "processed/dev/camera/IMG_0001/medium.webp",
            "processed/dev/camera/IMG_0001/thumbnail.webp",
        ]
        assert processed["source"]
        [upload] = _events(devplane_port, "io.minio.s3.ObjectCreated.Put", f"uploads/{key}")
        [delivery] = upload["deliveries"]
        assert (delivery["subscriber"], delivery["reply_id"]) == (
            "image-processor",
            processed["id"],
        )

        assert launcher.interrupt() == 0
    finally:
        launcher.close()
    assert not port_open(minio_port), "the MinIO it started is stopped"
    assert not port_open(source_port)


def test_a_reused_minio_gets_a_warning_that_its_webhook_is_not_configured(
    tmp_path: Path, mongo_server: MongoServer, minio_server: MinioServer
) -> None:
    extra = tmp_path / "dev-values.yaml"
    extra.write_text(
        yaml.safe_dump(
            {
                "cronJobs": {"cleanup": {"enabled": False}},
                "functions": {"minio-source": {"localPort": free_port()}},
            }
        )
    )
    launcher = Launcher(
        tmp_path,
        extra,
        ["minio-source"],
        devplane_port=free_port(),
        mongo_port=mongo_server.port,
        minio_port=minio_server.port,
    )
    try:
        assert "using it" in launcher.wait_line("minio:")
        warning = launcher.wait_line("minio: WARNING")
        assert "MINIO_NOTIFY_WEBHOOK_ENDPOINT_PLAYBOOK" in warning
        # The reused server has no such target: the setup command says so and fails.
        assert "does not know the webhook target" in launcher.wait_line("MinIO does not know")
        assert "FAILED with code 1" in launcher.wait_line("minio-setup: FAILED")
        assert launcher.interrupt() == 0
    finally:
        launcher.close()


class Launcher:
    """`python -m devplane.dev` as a process, its output read line by line."""

    def __init__(
        self,
        tmp_path: Path,
        values: Path,
        only: list[str],
        *,
        devplane_port: int,
        mongo_port: int,
        minio_port: int,
        env: dict[str, str] | None = None,
    ) -> None:
        argv = [sys.executable, "-m", "devplane.dev", "--data", str(tmp_path / "dev")]
        argv += ["--values", str(values)]
        for name in only:
            argv += ["--only", name]
        argv += ["--devplane-port", str(devplane_port), "--mongo-port", str(mongo_port)]
        argv += ["--minio-port", str(minio_port)]
        self.process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.process.stdout or ():
            self.lines.put(line)

    def wait_line(self, fragment: str, within: float = 90) -> str:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                continue
            self.seen.append(line)
            if fragment in line:
                return line
        pytest.fail(f"no line with {fragment!r} in:\n{''.join(self.seen)}")

    def interrupt(self) -> int:
        """Ctrl-C; the exit code."""
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(60)

    def close(self) -> None:
        if self.process.poll() is None:
            # Ctrl-C, so that it stops what it started even when the test failed half way.
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def output(self) -> str:
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return "".join(self.seen)


def _events(port: int, event_type: str, subject: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"http://127.0.0.1:{port}/events", params={"type": event_type, "limit": 1000}
    )
    response.raise_for_status()
    return [e for e in response.json()["events"] if e["subject"] == subject]


def _logged(port: int, event_type: str, subject: str) -> dict[str, Any]:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        found = _events(port, event_type, subject)
        if found:
            return found[0]
        time.sleep(0.3)
    pytest.fail(f"no {event_type} for {subject} in devplane's event log")


def _wait_ready(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health/readiness").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} not ready")


def _settled(port: int, event_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        events = httpx.get(f"http://127.0.0.1:{port}/events", params={"id": event_id}).json()
        if events["events"] and all(
            d["outcome"] not in ("pending", "retrying") for d in events["events"][0]["deliveries"]
        ):
            return dict(events["events"][0])
        time.sleep(0.2)
    pytest.fail(f"event {event_id} not settled")
