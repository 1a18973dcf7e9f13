"""cleanup's fixtures: buckets and an images collection of each test's own, the job's env."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from devplane.servers import MinioServer

from tests.cleanup.helpers import Store, minio_client


@pytest.fixture
def store(mongo_db: Any, minio_server: MinioServer) -> Iterator[Store]:
    minio = minio_client(minio_server)
    suffix = uuid.uuid4().hex[:10]
    made = Store(mongo_db, minio, f"uploads-{suffix}", f"processed-{suffix}")
    minio.make_bucket(made.uploads)
    minio.make_bucket(made.processed)
    yield made
    made.pool.shutdown()


@pytest.fixture
def job_env(service_env: dict[str, str], store: Store) -> dict[str, str]:
    """What the chart gives the CronJob, pointing at this test's servers and buckets."""
    return {
        **service_env,
        "UPLOADS_BUCKET": store.uploads,
        "PROCESSED_BUCKET": store.processed,
        "EVENT_SOURCE": "/knative-playbook/cleanup",
    }
