"""bulk-jobs fixtures: the app in-process on the real servers, a recording broker, uploads."""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from bulk_jobs.config import Settings
from bulk_jobs.main import create_app
from devplane.servers import MinioServer, MongoServer
from fnkit import Function
from minio import Minio

from tests.support.apps import app_starter
from tests.support.sinks import RecordingBroker
from tests.support.waiting import wait_for


@dataclass
class App:
    fn: Function[Settings]
    client: httpx.AsyncClient

    async def job(self, job_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def emitted(self, job_id: str) -> dict[str, Any]:
        """The job once its emission has finished."""

        async def done() -> dict[str, Any] | None:
            job = await self.job(job_id)
            return job if job["total"] is not None and job["emitted"] == job["total"] else None

        return await wait_for(done, f"job {job_id} emitted")


AppFactory = Callable[..., AbstractAsyncContextManager[App]]


@pytest.fixture
async def broker() -> AsyncIterator[RecordingBroker]:
    async with RecordingBroker() as server:
        yield server


@pytest.fixture
def minio(minio_server: MinioServer) -> Iterator[Minio]:
    yield Minio(
        minio_server.endpoint,
        access_key=minio_server.access_key,
        secret_key=minio_server.secret_key,
        secure=False,
    )


@pytest.fixture
def upload(minio: Minio) -> Callable[[bytes], dict[str, str]]:
    """Put `data` into a fresh bucket; returns the job `source` that names it."""

    def put(data: bytes) -> dict[str, str]:
        bucket, key = f"jobs-{uuid.uuid4().hex[:12]}", "imports/products.jsonl"
        minio.make_bucket(bucket)
        minio.put_object(bucket, key, io.BytesIO(data), len(data))
        return {"bucket": bucket, "key": key}

    return put


@pytest.fixture
def make_app(
    mongo_server: MongoServer,
    minio_server: MinioServer,
    mongo_db_name: str,
    broker: RecordingBroker,
) -> AppFactory:
    """`async with make_app(**settings) as app`: bulk-jobs on the test's database."""

    defaults = {
        "environment": "dev",
        "mongo_url": mongo_server.url,
        "mongo_db": mongo_db_name,
        "mongo_timeout_seconds": 2.0,
        "minio_endpoint": minio_server.endpoint,
        "minio_access_key": minio_server.access_key,
        "minio_secret_key": minio_server.secret_key,
        "k_sink": broker.url,
        "emit_attempts": 1,
    }
    return app_starter(create_app, Settings.model_validate, App, defaults, base_url="http://jobs")


@pytest.fixture
async def app(make_app: AppFactory) -> AsyncIterator[App]:
    async with make_app() as started:
        yield started
