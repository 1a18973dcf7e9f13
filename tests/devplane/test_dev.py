"""`make dev` (python -m devplane.dev) end to end, on free ports and the test servers."""

from __future__ import annotations

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
from devplane.servers import MinioServer, MongoServer, free_port, port_open

pytestmark = pytest.mark.e2e

ECHOED = "io.knative-playbook.test.echo-me.v1"


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
    launcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devplane.dev",
            "--data",
            str(tmp_path / "dev"),
            "--values",
            str(extra),
            "--only",
            "echo",
            "--only",
            "ghost",
            "--devplane-port",
            str(devplane_port),
            "--mongo-port",
            str(mongo_server.port),
            "--minio-port",
            str(minio_server.port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_pump, args=(launcher, lines), daemon=True).start()
    seen: list[str] = []

    def wait_line(fragment: str, within: float = 60) -> str:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                continue
            seen.append(line)
            if fragment in line:
                return line
        pytest.fail(f"no line with {fragment!r} in:\n{''.join(seen)}")

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

        launcher.send_signal(signal.SIGINT)
        assert launcher.wait(30) == 0
    finally:
        if launcher.poll() is None:
            # Ctrl-C, so that it stops what it started even when the test failed half way.
            launcher.send_signal(signal.SIGINT)
            try:
                launcher.wait(60)
            except subprocess.TimeoutExpired:
                launcher.kill()
    output = "".join(seen) + "".join(iter_queue(lines))
    assert "ghost: ghost_fn.main:app is not installed (yet), not started" in output
    assert not port_open(devplane_port)
    assert not port_open(echo_port)
    assert port_open(mongo_server.port), "servers it did not start are left running"


def _pump(launcher: subprocess.Popen[str], lines: queue.Queue[str]) -> None:
    for line in launcher.stdout or ():
        lines.put(line)


def iter_queue(lines: queue.Queue[str]) -> list[str]:
    found = []
    while not lines.empty():
        found.append(lines.get())
    return found


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
