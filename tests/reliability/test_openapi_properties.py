"""Property-based runs (schemathesis) over the OpenAPI document of every service with REST routes.

Each service runs as a real process on the real servers and is driven by `st run` from its own
`/openapi.json`, so a new route or a new function is covered without touching this file. The run
is seeded and bounded (examples per operation, no example database), so a failure in CI
reproduces locally with the same command.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from devplane.servers import FunctionProcess, MinioServer, MongoServer

from tests.reliability.services import WEBHOOK_TOKEN, deployables, service_environment, started

pytestmark = pytest.mark.e2e

SEED = 20261127
MAX_EXAMPLES = 6
# Schema-valid requests the services rightly refuse: a stale or absent If-Match (412, 428), a
# cursor they never issued, a price finer than its currency allows, an id that names nothing.
EXCLUDED_CHECKS = "positive_data_acceptance"


def with_routes() -> list[str]:
    """The deployable services whose OpenAPI document has routes beyond health and metrics."""
    names = []
    for name, module in sorted(deployables().items()):
        module_name, attr = module.split(":")
        app = getattr(importlib.import_module(module_name), attr)
        api = app.function.api if hasattr(app, "function") else app.api
        if any(not p.startswith("/health") and p != "/metrics" for p in api.openapi()["paths"]):
            names.append(name)
    return names


SERVICES = deployables()


class _Accept(BaseHTTPRequestHandler):
    """A broker that accepts every event, so that what a route emits never fails for want of one."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(202)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture(scope="module")
def sink() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Accept)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    thread.join()


@pytest.fixture(params=with_routes())
def service(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    sink: str,
    mongo_server: MongoServer,
    minio_server: MinioServer,
) -> Iterator[FunctionProcess]:
    name = request.param
    env = service_environment(mongo_server, minio_server, f"t_props_{uuid.uuid4().hex[:8]}", sink)
    yield from started(name, SERVICES[name], tmp_path, {**env, "LOG_LEVEL": "WARNING"})


def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    service: FunctionProcess, tmp_path: Path
) -> None:
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    assert st is not None, "schemathesis is in the dev dependency group"
    command = [
        st,
        "run",
        f"{service.url}/openapi.json",
        "--checks",
        "all",
        "--exclude-checks",
        EXCLUDED_CHECKS,
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--generation-database",
        "none",
        # One: schemathesis' workers are threads, and building its coverage cases in two at
        # once trips CPython 3.11's "AST constructor recursion depth mismatch" SystemError.
        "--workers",
        "1",
        "--request-timeout",
        "10",
        # minio-source's webhook wants the bearer token MinIO is configured with.
        "--header",
        f"Authorization: Bearer {WEBHOOK_TOKEN}",
        "--report-dir",
        str(tmp_path / "report"),
        "--no-color",
    ]
    run = subprocess.run(
        command, capture_output=True, text=True, timeout=240, cwd=tmp_path, check=False
    )
    print(run.stdout[-1500:])
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:] + service.log_tail()
    assert service.process is not None and service.process.poll() is None, service.log_tail()
