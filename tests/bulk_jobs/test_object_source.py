"""Items streamed from a JSON Lines object in the real MinIO: resumable, pinned by ETag."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from bulk_jobs.sources import ObjectItems
from devplane.servers import MinioServer
from minio import Minio
from minio.error import S3Error

from tests.bulk_jobs.test_sources import EXPECTED, TEXT

pytestmark = pytest.mark.integration


@pytest.fixture
def minio(minio_server: MinioServer) -> Iterator[Minio]:
    yield Minio(
        minio_server.endpoint,
        access_key=minio_server.access_key,
        secret_key=minio_server.secret_key,
        secure=False,
    )


def upload(client: Minio, data: bytes) -> tuple[str, str, str, int]:
    bucket, key = f"jobs-{uuid.uuid4().hex[:12]}", "in/items.jsonl"
    client.make_bucket(bucket)
    client.put_object(bucket, key, io.BytesIO(data), len(data))
    stat = client.stat_object(bucket, key)
    assert stat.etag is not None and stat.size is not None
    return bucket, key, stat.etag, stat.size


async def run_blocking(func: Any, *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(func, *args, **kwargs)


def object_items(client: Minio, ref: tuple[str, str, str, int], chunk: int) -> ObjectItems:
    bucket, key, etag, size = ref
    return ObjectItems(
        client,
        run_blocking,
        bucket=bucket,
        key=key,
        etag=etag,
        size=size,
        chunk_bytes=chunk,
        max_line=1000,
    )


async def test_an_object_streams_its_items_and_a_resume_continues_after_any_item(
    minio: Minio,
) -> None:
    ref = upload(minio, b"\xef\xbb\xbf" + TEXT)
    source = object_items(minio, ref, chunk=5)

    items = [item async for item in source.items(0, 0)]

    assert [(i.record, i.problem and i.problem[:14]) for i in items] == EXPECTED
    assert [i.index for i in items] == [0, 1, 2, 3, 4]
    assert items[-1].end == ref[3]
    for done in items:
        rest = [item async for item in source.items(done.index + 1, done.end)]
        assert rest == items[done.index + 1 :]


async def test_a_replaced_object_fails_the_read_instead_of_mixing_files(minio: Minio) -> None:
    ref = upload(minio, TEXT)
    minio.put_object(ref[0], ref[1], io.BytesIO(b'{"sku": "other"}\n'), 17)
    source = object_items(minio, ref, chunk=64)

    with pytest.raises(S3Error) as raised:
        _ = [item async for item in source.items(0, 0)]

    assert raised.value.code == "PreconditionFailed"


async def test_a_large_object_is_read_a_chunk_at_a_time(minio: Minio) -> None:
    records = [{"sku": f"SKU-{n}", "pad": "p" * (n % 50)} for n in range(5000)]
    data = b"".join(orjson.dumps(r) + b"\n" for r in records)
    source = object_items(minio, upload(minio, data), chunk=4096)

    read = [item.record async for item in source.items(0, 0)]

    assert read == records
