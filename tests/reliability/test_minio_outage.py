"""MinIO stopped or killed while upload events are in flight, then restarted.

Objects are uploaded, MinIO goes down, and their ObjectCreated events (as minio-source sends
them) reach image-processor through devplane: image-processor answers 503 and reports not
ready, devplane retries, and once MinIO is back each upload is processed exactly once.
"""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from devplane.servers import MinioServer
from minio import Minio

from tests.fnkit.helpers import metric, parse_metrics
from tests.image_processor.corpus import encode, marked
from tests.minio_source.records import s3_record
from tests.reliability.harness import (
    FAULTS,
    StartFunction,
    binary_headers,
    delivery,
    event_outcomes,
    plane_values,
    report,
    start_plane,
    status_of,
    wait_until,
)
from tests.support.sinks import EventSink

pytestmark = pytest.mark.e2e

CREATED = "io.minio.s3.ObjectCreated.Put"
UPLOADS = 6


@pytest.mark.parametrize("fault", FAULTS)
async def test_uploads_during_a_minio_outage_are_processed_once_when_it_returns(
    fault: str,
    function_process: StartFunction,
    service_env: dict[str, str],
    minio_server: MinioServer,
    mongo_db: Any,
    tmp_path: Path,
) -> None:
    suffix = uuid.uuid4().hex[:8]
    uploads, processed = f"up-{suffix}", f"done-{suffix}"
    minio = Minio(
        minio_server.endpoint, minio_server.access_key, minio_server.secret_key, secure=False
    )
    for bucket in (uploads, processed):
        await asyncio.to_thread(minio.make_bucket, bucket)
    env = {**service_env, "UPLOADS_BUCKET": uploads, "PROCESSED_BUCKET": processed}
    processor = await asyncio.to_thread(
        function_process, "image_processor.main:app", env, name="image-processor"
    )
    sink = EventSink()
    await sink.start()
    trigger = {
        "name": "uploads",
        "filter": {"attributes": {"type": CREATED, "bucket": uploads}},
    }
    values = plane_values(
        tmp_path / "routes.json",
        {"image-processor": {"url": processor.url, "triggers": [trigger]}},
        dead_letter_url=sink.url,
        policy=delivery(retry=20, delay="PT0.25S", timeout="PT30S"),
    )
    plane = await asyncio.to_thread(start_plane, function_process, service_env, values)

    photo = encode(marked((640, 480)), "JPEG")
    records, keys = [], []
    for n in range(UPLOADS):
        key = f"outage/{fault}/{n}.jpg"
        put = await asyncio.to_thread(
            minio.put_object, uploads, key, io.BytesIO(photo), len(photo), "image/jpeg"
        )
        records.append(s3_record(uploads, key, etag=str(put.etag).strip('"'), size=len(photo)))
        keys.append(key)

    began = time.monotonic()
    await asyncio.to_thread(getattr(minio_server, fault))
    down_at = time.monotonic()
    async with httpx.AsyncClient(timeout=10) as client:
        accepted = []
        for key, record in zip(keys, records, strict=True):
            headers = binary_headers(CREATED, bucket=uploads, key=key)
            headers["ce-source"] = "/knative-playbook/minio-source"
            response = await client.post(f"{plane.url}/", headers=headers, json=record)
            assert response.status_code == 202
            accepted.append(headers["ce-id"])

        async def not_ready() -> bool:
            return await status_of(client, f"{processor.url}/health/readiness") == 503

        readiness_false_after = await wait_until(not_ready, "readiness to turn false")

        async def answered_503() -> bool:
            response = await client.get(f"{plane.url}/events", params={"id": accepted[0]})
            deliveries = response.json()["events"][0]["deliveries"]
            return bool(deliveries) and deliveries[0]["status"] == 503

        await wait_until(answered_503, "image-processor to answer 503 while MinIO is down")
        await asyncio.sleep(2)
        await asyncio.to_thread(minio_server.start)
        back_at = time.monotonic()

        async def ready() -> bool:
            return await status_of(client, f"{processor.url}/health/readiness") == 200

        ready_after = await wait_until(ready, "readiness to come back")

        async def all_processed() -> bool:
            outcomes = await event_outcomes(client, plane.url, accepted)
            return all(o in ("delivered", "dead-lettered") for o in outcomes.values())

        settled_after = await wait_until(all_processed, "every upload event to settle")
        outcomes = await event_outcomes(client, plane.url, accepted)
        metrics = parse_metrics((await client.get(f"{processor.url}/metrics")).text)
        attempts = [
            (await client.get(f"{plane.url}/events", params={"id": i})).json()["events"][0][
                "deliveries"
            ][0]["attempts"]
            for i in accepted
        ]
    await sink.stop()

    assert set(outcomes.values()) == {"delivered"}, outcomes
    images = await mongo_db["images"].find({"bucket": uploads}).to_list()
    assert sorted(d["key"] for d in images) == sorted(keys)
    assert {d["status"] for d in images} == {"processed"}
    assert metric(metrics, "image_processor_uploads_total", outcome="processed") == UPLOADS
    stored = await asyncio.to_thread(lambda: list(minio.list_objects(processed, recursive=True)))
    assert len(stored) == UPLOADS * 2, "each upload's renditions, once"
    report(
        f"minio-{fault}",
        {
            "uploads": UPLOADS,
            "attempts_per_event": attempts,
            "readiness_false_after_s": round(readiness_false_after, 2),
            "ready_after_return_s": round(ready_after, 2),
            "all_processed_after_return_s": round(settled_after, 2),
            "outage_s": round(back_at - down_at, 2),
            "server_stop_s": round(down_at - began, 2),
        },
    )
