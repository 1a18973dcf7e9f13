"""End to end: S3 upload -> MinIO's webhook (with its queue_dir) -> minio-source -> K_SINK.

A MinIO server of its own is configured by environment variables exactly as compose and the
chart configure it, the setup command points the bucket at the webhook, and minio-source runs
as a real process whose K_SINK is a real HTTP server in this test. MinIO retries a notification
from its queue every 3 seconds (a constant in MinIO, not configurable), so waits are generous.
"""

from __future__ import annotations

import asyncio
import io
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from devplane.servers import FunctionProcess, MinioServer, free_port
from fnkit.events import CloudEvent, event_data, parse_event
from minio import Minio
from minio_source.setup import apply

from tests.fnkit.helpers import Sink
from tests.minio_source.servers import setup_settings, source_env, webhook_minio

pytestmark = pytest.mark.e2e

UPLOADS = "uploads"


@pytest.fixture(scope="module")
def source_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, source_port: int) -> Iterator[MinioServer]:
    server = webhook_minio(tmp_path_factory.mktemp("e2e-minio"), source_port)
    server.start()
    apply(setup_settings(server), wait=30)
    yield server
    server.stop()


@pytest.fixture
def minio(server: MinioServer) -> Minio:
    return Minio(server.endpoint, server.access_key, server.secret_key, secure=False)


@pytest.fixture
async def source(
    function_process: Callable[..., FunctionProcess],
    server: MinioServer,
    source_port: int,
    sink: Sink,
) -> FunctionProcess:
    env = source_env(server, K_SINK=sink.url, EMIT_ATTEMPTS="1")
    return await asyncio.to_thread(
        function_process, "minio_source.main:app", env=env, name="minio-source", port=source_port
    )


async def arrived(
    sink: Sink, keys: set[str], *, refused: int = 0, within: float = 60.0
) -> dict[str, CloudEvent]:
    """Wait until the sink accepted an event for each key (after `refused` refusals)."""
    deadline = time.monotonic() + within
    while True:
        events = [parse_event(r.headers, r.body) for r in sink.requests[refused:]]
        latest = {e.get_extension("key"): e for e in events}
        if keys <= set(latest):
            return {k: latest[k] for k in keys}
        if time.monotonic() > deadline:
            pytest.fail(f"events for {sorted(keys - set(latest))} not accepted in {within}s")
        await asyncio.sleep(0.2)


def upload(minio: Minio, key: str, data: bytes = b"\xff\xd8\xff not really a jpeg") -> Any:
    return minio.put_object(UPLOADS, key, io.BytesIO(data), len(data), content_type="image/jpeg")


async def test_an_upload_becomes_a_cloudevent_at_the_sink(
    source: FunctionProcess, minio: Minio, sink: Sink
) -> None:
    key = "e2e/holiday pics/ä+b.jpg"
    result = await asyncio.to_thread(upload, minio, key)

    event = (await arrived(sink, {key}))[key]

    assert event.get_type() == "io.minio.s3.ObjectCreated.Put"
    assert event.get_subject() == f"{UPLOADS}/{key}"
    assert event.get_extension("bucket") == UPLOADS
    data = event_data(event)
    assert data["s3"]["object"]["eTag"] == result.etag.strip('"')
    assert data["eventName"] == "s3:ObjectCreated:Put"
    assert len(event.get_id()) == 32


async def test_a_multipart_upload_has_its_own_type(
    source: FunctionProcess, minio: Minio, sink: Sink
) -> None:
    key = "e2e/big.bin"
    data = os.urandom(6 << 20)

    await asyncio.to_thread(minio.put_object, UPLOADS, key, io.BytesIO(data), -1, part_size=5 << 20)

    event = (await arrived(sink, {key}))[key]
    assert event.get_type() == "io.minio.s3.ObjectCreated.CompleteMultipartUpload"


async def test_a_refusing_broker_makes_minio_redeliver_with_the_same_id(
    source: FunctionProcess, minio: Minio, sink: Sink
) -> None:
    sink.script = [503, 503]  # minio-source answers 503 twice; MinIO keeps the notification
    key = "e2e/refused.jpg"

    await asyncio.to_thread(upload, minio, key)

    delivered = (await arrived(sink, {key}, refused=2))[key]
    attempts = [parse_event(r.headers, r.body) for r in sink.requests]
    assert [e.get_extension("key") for e in attempts] == [key] * 3
    assert {e.get_id() for e in attempts} == {delivered.get_id()}


async def test_uploads_made_while_the_webhook_is_down_arrive_when_it_is_back(
    source: FunctionProcess, minio: Minio, sink: Sink
) -> None:
    await asyncio.to_thread(source.stop)
    keys = {f"e2e/while-down/{n}.jpg" for n in range(4)}
    for key in sorted(keys):
        await asyncio.to_thread(upload, minio, key)
    await asyncio.sleep(4)  # at least one of MinIO's retry rounds finds nobody listening
    assert not any(r for r in sink.requests if b"while-down" in r.body)

    await asyncio.to_thread(source.start)

    events = await arrived(sink, keys)
    assert len({e.get_id() for e in events.values()}) == len(keys)
