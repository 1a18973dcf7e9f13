"""`devplane servers`: the real MongoDB-protocol server and MinIO in the foreground, stopped
with them by Ctrl-C or SIGTERM, on free ports."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from devplane.servers import free_port, port_open

pytestmark = pytest.mark.integration

READY_WITHIN = 120.0
STOPPED_WITHIN = 60.0


def _start(tmp_path: Path, *, ignore_sigint: bool) -> tuple[subprocess.Popen[str], int, int]:
    mongo_port, minio_port = free_port(), free_port()

    command = [
        str(Path(sys.executable).parent / "devplane-servers"),
        "--data",
        str(tmp_path / "data"),
        "--mongo-port",
        str(mongo_port),
        "--minio-port",
        str(minio_port),
    ]
    if ignore_sigint:
        # What a shell without job control (nohup, a CI runner) does to background commands.
        command = ["sh", "-c", 'trap "" INT && exec "$@"', "sh", *command]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    deadline = time.monotonic() + READY_WITHIN
    ready: list[str] = []
    while len(ready) < 2 and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        if " ready on " in line:
            ready.append(line)
    if len(ready) < 2:
        process.kill()
        pytest.fail(f"devplane servers did not start: {ready}, exit {process.wait()}")
    assert port_open(mongo_port) and port_open(minio_port)
    return process, mongo_port, minio_port


@pytest.mark.parametrize(
    ("stop_signal", "ignore_sigint"),
    [(signal.SIGTERM, False), (signal.SIGINT, True)],
    ids=["sigterm", "ctrl-c-started-with-sigint-ignored"],
)
def test_the_signal_that_stops_devplane_servers_stops_both_servers(
    tmp_path: Path, stop_signal: signal.Signals, ignore_sigint: bool
) -> None:
    process, mongo_port, minio_port = _start(tmp_path, ignore_sigint=ignore_sigint)
    try:
        process.send_signal(stop_signal)
        assert process.wait(STOPPED_WITHIN) == 0
    finally:
        if process.poll() is None:
            process.kill()
    # The servers were stopped before it exited, not left running as orphans.
    assert not port_open(mongo_port)
    assert not port_open(minio_port)
