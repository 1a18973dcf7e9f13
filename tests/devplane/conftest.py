"""Fixtures for devplane's end-to-end tests: one devplane and its test subscribers per module.

Subscribers are `tests/devplane/subscriber.py` run as real function processes (they record
every attempt in the real MongoDB-protocol server); `dls` is the recording stand-in for the
dead-letter service.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from devplane.servers import FunctionProcess, MinioServer, MongoServer, free_port
from pymongo import AsyncMongoClient

from tests.devplane.plane import SUBSCRIBERS, Plane, routing_values


@pytest.fixture(scope="module")
def plane_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("devplane")


@pytest.fixture(scope="module")
def plane_processes(
    plane_dir: Path, mongo_server: MongoServer, minio_server: MinioServer
) -> Iterator[tuple[FunctionProcess, dict[str, FunctionProcess], str, int]]:
    db_name = f"t_devplane_{uuid.uuid4().hex[:8]}"
    base_env = {
        "ENVIRONMENT": "dev",
        "MONGO_URL": mongo_server.url,
        "MONGO_DB": db_name,
        "MONGO_TIMEOUT_SECONDS": "2",
        "MINIO_ENDPOINT": minio_server.endpoint,
        "MINIO_ACCESS_KEY": minio_server.access_key,
        "MINIO_SECRET_KEY": minio_server.secret_key,
    }
    started: list[FunctionProcess] = []
    try:
        subscribers = {}
        for name in SUBSCRIBERS:
            process = FunctionProcess(
                name,
                free_port(),
                plane_dir / "data",
                module="tests.devplane.subscriber:app",
                env={
                    **base_env,
                    "SUBSCRIBER_NAME": name,
                    "FOLLOW_SCRIPT": str(name != "dls").lower(),
                },
                log_path=plane_dir / f"{name}.log",
            )
            process.start()
            started.append(process)
            subscribers[name] = process
        values = plane_dir / "test-values.yaml"
        values.write_text(routing_values({name: p.url for name, p in subscribers.items()}))
        capacity = 20
        port = free_port()
        devplane = FunctionProcess(
            "devplane",
            port,
            plane_dir / "data",
            module="devplane.main:app",
            env={
                **base_env,
                "DEVPLANE_EXTRA_VALUES": str(values),
                "DEVPLANE_URL": f"http://127.0.0.1:{port}",
                "DEVPLANE_QUEUE_CAPACITY": str(capacity),
                "DEVPLANE_WORKERS": "4",
            },
            log_path=plane_dir / "devplane.log",
        )
        devplane.start()
        started.append(devplane)
        for process in started:
            process.wait_ready(timeout=60)
        yield devplane, subscribers, db_name, capacity
    finally:
        for process in reversed(started):
            process.stop()


@pytest.fixture(scope="module")
async def plane(
    plane_processes: tuple[FunctionProcess, dict[str, FunctionProcess], str, int],
    mongo_server: MongoServer,
) -> AsyncIterator[Plane]:
    devplane, subscribers, db_name, capacity = plane_processes
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_server.url, tz_aware=True)
    async with httpx.AsyncClient(timeout=10) as client:
        yield Plane(devplane.url, devplane, subscribers, mongo[db_name], client, capacity)
    await mongo.close()
