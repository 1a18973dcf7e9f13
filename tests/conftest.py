"""Fixtures shared by every test: real servers, service environments, function processes.

Integration and end-to-end tests get a real MongoDB-protocol server and a real MinIO server,
started once per session as processes (see devplane.servers). A missing server binary fails
the test with the command that installs it: these tests are never skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from devplane.servers import (
    FunctionProcess,
    MinioServer,
    MongoServer,
    ServerUnavailable,
    free_port,
)
from devplane.servers import (
    minio_server as make_minio_server,
)
from devplane.servers import (
    mongo_server as make_mongo_server,
)
from pymongo import AsyncMongoClient


@pytest.fixture(scope="session")
def servers_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("servers")


def _started(server: Any) -> Any:
    try:
        server.start()
    except ServerUnavailable as exc:
        pytest.fail(
            f"{exc}\nInstall the test servers with: scripts/install-test-servers", pytrace=False
        )
    return server


@pytest.fixture(scope="session")
def mongo_server(servers_root: Path) -> Iterator[MongoServer]:
    """A MongoDB-protocol server for the whole session (tests may stop and restart it)."""
    try:
        server = make_mongo_server(servers_root)
    except ServerUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    yield _started(server)
    server.stop()


@pytest.fixture(scope="session")
def minio_server(servers_root: Path) -> Iterator[MinioServer]:
    """A MinIO server for the whole session (tests may stop and restart it)."""
    try:
        server = make_minio_server(servers_root)
    except ServerUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    yield _started(server)
    server.stop()


@pytest.fixture(autouse=True)
def _servers_running(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that stopped a shared server must not leave it down for the next one."""
    yield
    for name in ("mongo_server", "minio_server"):
        if name in request.fixturenames:
            server = request.getfixturevalue(name)
            if server.process is None or server.process.poll() is not None:
                server.start()


@pytest.fixture
def mongo_db_name() -> str:
    """A database of its own for each test, so tests never see each other's documents."""
    return f"t_{uuid.uuid4().hex[:16]}"


@pytest.fixture
async def mongo_db(mongo_server: MongoServer, mongo_db_name: str) -> AsyncIterator[Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongo_server.url, tz_aware=True, serverSelectionTimeoutMS=5000
    )
    yield client[mongo_db_name]
    await client.close()


@pytest.fixture
def service_env(
    mongo_server: MongoServer, minio_server: MinioServer, mongo_db_name: str
) -> dict[str, str]:
    """Environment for a function talking to the test servers."""
    return {
        "ENVIRONMENT": "dev",
        "LOG_LEVEL": "INFO",
        "MONGO_URL": mongo_server.url,
        "MONGO_DB": mongo_db_name,
        "MONGO_TIMEOUT_SECONDS": "2",
        "MINIO_ENDPOINT": minio_server.endpoint,
        "MINIO_ACCESS_KEY": minio_server.access_key,
        "MINIO_SECRET_KEY": minio_server.secret_key,
    }


@pytest.fixture
def function_process(tmp_path: Path) -> Iterator[Callable[..., FunctionProcess]]:
    """Start functions as real processes: `function_process("fnkit.echo:app", env={...})`."""
    started: list[FunctionProcess] = []

    def start(
        module: str,
        env: dict[str, str] | None = None,
        *,
        name: str | None = None,
        port: int | None = None,
        ready: bool = True,
    ) -> FunctionProcess:
        proc = FunctionProcess(
            name or module.split(".")[0],
            port or free_port(),
            tmp_path / "fn-data",
            env={"ENVIRONMENT": "dev", **(env or {})},
            module=module,
            log_path=tmp_path / f"{name or module}.log",
        )
        proc.start()
        started.append(proc)
        if ready:
            proc.wait_ready()
        return proc

    yield start
    for proc in started:
        proc.stop()


def pytest_report_header(config: pytest.Config) -> list[str]:
    from devplane.servers import find_binary

    mongo = find_binary("mongod") or find_binary("ferretdb")
    minio = find_binary("minio")
    return [
        f"test servers: mongo={mongo} minio={minio} (KNATIVE_PLAYBOOK_CACHE="
        f"{os.environ.get('KNATIVE_PLAYBOOK_CACHE', '~/.cache/knative-playbook')})"
    ]
