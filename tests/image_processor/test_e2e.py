"""The whole pattern as processes: S3 upload -> MinIO webhook -> minio-source -> devplane ->
image-processor -> renditions in the processed bucket, a MongoDB record, and the reply event
in devplane's event log.

MinIO and its webhook target are configured by environment variables and the setup command,
as in compose; devplane routes with the chart's own Triggers (type and bucket filters), with
only the subscribers' URLs and delivery timings overridden for the test.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from devplane.servers import FunctionProcess, MinioServer, MongoServer, free_port
from minio import Minio
from minio_source.setup import apply
from pymongo import AsyncMongoClient

from tests.fnkit.helpers import metric, parse_metrics
from tests.image_processor.corpus import by_name, encode, exif_with, marked, samples
from tests.minio_source.servers import setup_settings, source_env, webhook_minio
from tests.support.processes import ProcessGroup, shared_env
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
PROCESSED = "io.knative-playbook.image.processed.v1"
REJECTED = "io.knative-playbook.image.rejected.v1"


@dataclass
class Chain:
    minio: Minio
    source: FunctionProcess
    processor: FunctionProcess
    devplane: FunctionProcess
    images: Any
    http: httpx.AsyncClient

    def upload(self, key: str, data: bytes) -> str:
        result = self.minio.put_object("uploads", key, io.BytesIO(data), len(data))
        return str(result.etag).strip('"')

    async def record(self, key: str, within: float = 60.0) -> dict[str, Any]:
        async def find() -> dict[str, Any] | None:
            found: dict[str, Any] | None = await self.images.find_one({"key": key})
            return found

        return await wait_for(find, f"the record of {key}", within=within, every=0.25)

    async def logged(self, event_type: str, subject: str) -> list[dict[str, Any]]:
        response = await self.http.get(
            f"{self.devplane.url}/events", params={"type": event_type, "limit": 1000}
        )
        response.raise_for_status()
        return [e for e in response.json()["events"] if e["subject"] == subject]

    async def wait_logged(self, event_type: str, subject: str) -> list[dict[str, Any]]:
        """The `event_type` events about `subject` in devplane's log, once there is one."""
        return await wait_for(
            lambda: self.logged(event_type, subject),
            f"{event_type} about {subject} in devplane's log",
            every=0.25,
        )

    async def processed_count(self) -> float:
        response = await self.http.get(f"{self.processor.url}/metrics")
        samples = parse_metrics(response.text)
        return metric(samples, "image_processor_uploads_total", outcome="processed") or 0.0


def routing(processor_url: str, dead_letters_url: str) -> dict[str, Any]:
    """The chart's values with every other function off and test-sized delivery timings."""
    chart = yaml.safe_load((REPO / "charts/knative-playbook/values.yaml").read_text())
    functions: dict[str, Any] = {name: {"enabled": False} for name in chart["functions"]}
    functions["image-processor"] = {"enabled": True, "url": processor_url}
    functions["dead-letter"] = {"enabled": False, "url": dead_letters_url}
    return {
        "eventing": {
            "delivery": {
                "retry": 5,
                "backoffPolicy": "exponential",
                "backoffDelay": "PT0.2S",
                "timeout": "PT30S",
                "deadLetterSink": "dead-letter",
            }
        },
        "functions": functions,
    }


@pytest.fixture(scope="module")
def chain_processes(
    tmp_path_factory: pytest.TempPathFactory, mongo_server: MongoServer
) -> Iterator[tuple[MinioServer, dict[str, FunctionProcess], str]]:
    root = tmp_path_factory.mktemp("chain")
    source_port = free_port()
    minio = webhook_minio(root, source_port)
    minio.start()
    db = f"t_chain_{uuid.uuid4().hex[:8]}"
    try:
        apply(setup_settings(minio), wait=30)
        common = shared_env(mongo_server.url, db, minio)
        with ProcessGroup(root) as group:
            processor = group.start(
                "image-processor", "image_processor.main:app", free_port(), common
            )
            values = root / "values.yaml"
            values.write_text(json.dumps(routing(processor.url, f"http://127.0.0.1:{free_port()}")))
            devplane = group.start_devplane(free_port(), common, values)
            source = group.start(
                "minio-source",
                "minio_source.main:app",
                source_port,
                source_env(minio, K_SINK=devplane.url),
            )
            group.wait_ready(60)
            yield minio, {"source": source, "processor": processor, "devplane": devplane}, db
    finally:
        minio.stop()


@pytest.fixture
async def chain(
    chain_processes: tuple[MinioServer, dict[str, FunctionProcess], str],
    mongo_server: MongoServer,
) -> AsyncIterator[Chain]:
    server, procs, db = chain_processes
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_server.url, tz_aware=True)
    minio = Minio(server.endpoint, server.access_key, server.secret_key, secure=False)
    async with httpx.AsyncClient(timeout=10) as http:
        yield Chain(
            minio, procs["source"], procs["processor"], procs["devplane"], mongo[db]["images"], http
        )
    await mongo.close()


async def test_an_upload_becomes_renditions_a_record_and_an_event(chain: Chain) -> None:
    key = "e2e/camera/IMG_0001.jpg"
    photo = encode(marked((2400, 1800)), "JPEG", exif=exif_with(orientation=6, gps=True))

    etag = await asyncio.to_thread(chain.upload, key, photo)

    record = await chain.record(key)
    assert (record["status"], record["etag"], record["bucket"]) == ("processed", etag, "uploads")
    assert {(r["name"], r["width"], r["height"]) for r in record["renditions"]} == {
        ("thumbnail", 192, 256),
        ("medium", 768, 1024),
    }
    stored = await asyncio.to_thread(
        lambda: sorted(
            o.object_name
            for o in chain.minio.list_objects("processed", prefix="processed/e2e/", recursive=True)
        )
    )
    assert stored == [
        "processed/e2e/camera/IMG_0001/medium.webp",
        "processed/e2e/camera/IMG_0001/thumbnail.webp",
    ]
    replies = await chain.wait_logged(PROCESSED, f"uploads/{key}")
    created = await chain.logged("io.minio.s3.ObjectCreated.Put", f"uploads/{key}")
    assert created[0]["source"] == "/knative-playbook/minio-source"
    [delivery] = created[0]["deliveries"]
    assert (delivery["subscriber"], delivery["outcome"]) == ("image-processor", "delivered")
    assert delivery["reply_id"] == replies[0]["id"]


async def test_a_bad_upload_is_rejected_end_to_end(chain: Chain) -> None:
    key = "e2e/not-a-photo.jpg"

    await asyncio.to_thread(chain.upload, key, by_name("text-named-jpg").data)

    record = await chain.record(key)
    assert (record["status"], record["reason"]) == ("rejected", "not_an_image")
    rejected = await chain.wait_logged(REJECTED, f"uploads/{key}")
    assert len(rejected) == 1


def peak_rss_bytes(process: FunctionProcess) -> int:
    """The process's resident-set high-water mark (VmHWM), which no sampling can miss."""
    assert process.process is not None
    status = Path(f"/proc/{process.process.pid}/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB$", status, re.M)[1]) * 1024  # type: ignore[index]


# Decoding any of the header bombs would take at least 1 GiB; inflating a metadata bomb 64 MiB.
BOMB_HEADROOM = 48 << 20


async def test_image_bombs_are_rejected_once_with_memory_bounded(chain: Chain) -> None:
    bombs = [s for s in samples() if s.reason == "decompression_bomb" or "frames" in s.name]
    before = peak_rss_bytes(chain.processor)
    outcomes = {}
    for sample in bombs:
        key = f"e2e/bombs/{sample.key}"
        await asyncio.to_thread(chain.upload, key, sample.data)
        record = await chain.record(key)
        reply = REJECTED if sample.reason else PROCESSED
        subject = f"uploads/{key}"
        # The reply is logged once its delivery settled, so the delivery is final by then.
        await chain.wait_logged(reply, subject)
        created = await chain.logged("io.minio.s3.ObjectCreated.Put", subject)
        [delivery] = created[0]["deliveries"]
        outcomes[sample.name] = (
            record["status"],
            record.get("reason"),
            delivery["outcome"],
            delivery["attempts"],
            delivery["status"],
        )
    growth = peak_rss_bytes(chain.processor) - before

    expected = {
        s.name: (
            "rejected" if s.reason else "processed",
            s.reason,
            "delivered",
            1,
            200,
        )
        for s in bombs
    }
    assert outcomes == expected
    assert chain.processor.process is not None and chain.processor.process.poll() is None
    assert growth < BOMB_HEADROOM, f"peak RSS grew by {growth >> 20} MiB"
    print(f"\nRELIABILITY image-bombs: {len(bombs)} uploads, peak RSS growth {growth >> 20} MiB")


async def test_uploads_while_the_webhook_is_down_are_each_processed_exactly_once(
    chain: Chain,
) -> None:
    before = await chain.processed_count()
    await asyncio.to_thread(chain.source.stop)
    keys = [f"e2e/outage/{n}.jpg" for n in range(5)]
    for n, key in enumerate(keys):
        # Different pictures: each upload has its own ETag, so none is a duplicate of another.
        await asyncio.to_thread(chain.upload, key, encode(marked((640 + 16 * n, 480)), "JPEG"))
    await asyncio.sleep(4)  # at least one of MinIO's retry rounds finds nobody listening
    assert await chain.images.count_documents({"key": {"$in": keys}}) == 0

    await asyncio.to_thread(chain.source.start)

    for key in keys:
        assert (await chain.record(key))["status"] == "processed"
    await wait_for(lambda: _all_logged(chain, keys), "every upload's reply logged", every=0.25)
    assert await chain.processed_count() - before == len(keys)
    for key in keys:
        replies = await chain.logged(PROCESSED, f"uploads/{key}")
        assert len({r["id"] for r in replies}) == 1
        assert await chain.images.count_documents({"key": key}) == 1


async def _all_logged(chain: Chain, keys: list[str]) -> bool:
    return all([await chain.logged(PROCESSED, f"uploads/{key}") for key in keys])
