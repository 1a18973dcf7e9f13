"""image-processor's fixtures: buckets of its own per test, the function served in-process."""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from devplane.servers import MinioServer
from fnkit.events import CloudEvent, event_data, parse_event
from image_processor.config import Settings
from image_processor.main import create_app
from minio import Minio

from tests.fnkit.helpers import Served, binary_event, serve
from tests.minio_source.records import s3_record


def minio_client(server: MinioServer) -> Minio:
    return Minio(
        server.endpoint, access_key=server.access_key, secret_key=server.secret_key, secure=False
    )


@dataclass
class Buckets:
    minio: Minio
    uploads: str
    processed: str

    def upload(self, key: str, data: bytes, content_type: str = "image/jpeg") -> dict[str, Any]:
        """Put an object; returns the S3 record MinIO would send for it."""
        result = self.minio.put_object(
            self.uploads, key, io.BytesIO(data), len(data), content_type=content_type
        )
        return s3_record(self.uploads, key, etag=str(result.etag).strip('"'), size=len(data))

    def processed_keys(self) -> list[str]:
        return sorted(
            str(o.object_name) for o in self.minio.list_objects(self.processed, recursive=True)
        )

    def read(self, key: str) -> tuple[bytes, dict[str, str]]:
        response = self.minio.get_object(self.processed, key)
        try:
            return response.read(), {k.lower(): v for k, v in response.headers.items()}
        finally:
            response.close()
            response.release_conn()


@pytest.fixture
def buckets(minio_server: MinioServer) -> Iterator[Buckets]:
    client = minio_client(minio_server)
    suffix = uuid.uuid4().hex[:10]
    made = Buckets(client, f"uploads-{suffix}", f"processed-{suffix}")
    client.make_bucket(made.uploads)
    client.make_bucket(made.processed)
    yield made


def processor_settings(service_env: dict[str, str], buckets: Buckets, **overrides: Any) -> Settings:
    values: dict[str, Any] = {k.lower(): v for k, v in service_env.items()}
    values.update(uploads_bucket=buckets.uploads, processed_bucket=buckets.processed, **overrides)
    return Settings(**values)


@pytest.fixture
async def processor(service_env: dict[str, str], buckets: Buckets) -> AsyncIterator[Served]:
    async with serve(create_app(processor_settings(service_env, buckets))) as served:
        yield served


async def deliver(
    served: Served,
    record: dict[str, Any],
    *,
    event_id: str | None = None,
    event_type: str = "io.minio.s3.ObjectCreated.Put",
) -> tuple[int, CloudEvent | None, Any]:
    """POST the record as minio-source would; (status, reply event, reply data or error)."""
    headers, body = binary_event(
        event_type, record, id=event_id or uuid.uuid4().hex, source="/knative-playbook/minio-source"
    )
    response = await served.send(headers, body)
    if response.status_code != 200:
        return response.status_code, None, response.json()
    reply = parse_event({k.lower(): v for k, v in response.headers.items()}, response.content)
    return response.status_code, reply, event_data(reply)
