"""image-processor against real MinIO and MongoDB: outcomes, records, idempotency, failures."""

from __future__ import annotations

import asyncio
import io
from datetime import datetime, timedelta
from typing import Any

import pytest
from devplane.servers import MinioServer
from image_processor.main import create_app
from PIL import Image

from tests.fnkit.helpers import Served, serve
from tests.image_processor.conftest import Buckets, deliver, processor_settings
from tests.image_processor.corpus import Sample, by_name, samples
from tests.minio_source.records import s3_record

pytestmark = pytest.mark.integration

PROCESSED = "io.knative-playbook.image.processed.v1"
REJECTED = "io.knative-playbook.image.rejected.v1"


def stem_of(key: str) -> str:
    return key.rsplit(".", 1)[0]


@pytest.mark.parametrize("sample", samples(), ids=lambda s: s.name)
async def test_every_upload_of_the_corpus_gets_its_outcome(
    sample: Sample, processor: Served, buckets: Buckets, mongo_db: Any
) -> None:
    record = buckets.upload(sample.key, sample.data)

    status, reply, data = await deliver(processor, record)

    assert status == 200
    assert reply is not None
    assert reply.get_subject() == f"{buckets.uploads}/{sample.key}"
    document = await mongo_db["images"].find_one({"bucket": buckets.uploads, "key": sample.key})
    assert document is not None
    assert document["etag"] == record["s3"]["object"]["eTag"]
    assert document["expires_at"] - document["processed_at"] == timedelta(days=30)
    if sample.reason is not None:
        assert reply.get_type() == REJECTED
        assert data["reason"] == sample.reason
        assert (document["status"], document["reason"]) == ("rejected", sample.reason)
        assert buckets.processed_keys() == []
        return
    assert reply.get_type() == PROCESSED
    stem = stem_of(sample.key)
    expected = [f"processed/{stem}/medium.webp", f"processed/{stem}/thumbnail.webp"]
    assert buckets.processed_keys() == expected
    assert [r["key"] for r in sorted(data["renditions"], key=lambda r: r["key"])] == expected
    assert document["status"] == "processed"
    assert document["source"]["format"] == sample.source_format
    assert document["renditions"] == data["renditions"]
    for rendition in data["renditions"]:
        body, headers = buckets.read(rendition["key"])
        image = Image.open(io.BytesIO(body))
        assert (image.format, image.size) == ("WEBP", (rendition["width"], rendition["height"]))
        assert len(body) == rendition["bytes"]
        assert headers["content-type"] == "image/webp"
        assert headers["x-amz-meta-source-etag"] == document["etag"]
        assert headers["x-amz-meta-rendition"] == rendition["name"]
    medium = next(r for r in data["renditions"] if r["name"] == "medium")
    assert (medium["width"], medium["height"]) == sample.medium


async def test_a_redelivered_event_does_not_process_twice(
    processor: Served, buckets: Buckets, mongo_db: Any
) -> None:
    record = buckets.upload("cat.jpg", by_name("baseline-jpeg").data)

    first = await deliver(processor, record, event_id="same-id")
    again = await deliver(processor, record, event_id="same-id")
    other_id = await deliver(processor, record, event_id="another-delivery-of-the-same-upload")

    assert first[0] == again[0] == other_id[0] == 200
    assert first[2] == again[2] == other_id[2]  # the first reply, processed_at and all
    assert await mongo_db["images"].count_documents({}) == 1


async def test_concurrent_duplicates_process_once(
    processor: Served, buckets: Buckets, mongo_db: Any
) -> None:
    record = buckets.upload("burst.jpg", by_name("progressive-jpeg").data)

    results = await asyncio.gather(*(deliver(processor, record) for _ in range(4)))

    statuses = sorted(status for status, _, _ in results)
    # One delivery does the work; the others either get its reply or a 409 (Knative retries).
    assert statuses.count(200) >= 1 and set(statuses) <= {200, 409}
    replies = {str(data["processed_at"]) for status, _, data in results if status == 200}
    assert len(replies) == 1
    assert await mongo_db["images"].count_documents({}) == 1


async def test_many_uploads_at_once_are_all_processed(
    processor: Served, buckets: Buckets, mongo_db: Any
) -> None:
    records = [buckets.upload(f"batch/{n}.jpg", by_name("baseline-jpeg").data) for n in range(6)]

    results = await asyncio.gather(*(deliver(processor, r) for r in records))

    assert [status for status, _, _ in results] == [200] * 6
    assert await mongo_db["images"].count_documents({"status": "processed"}) == 6
    assert len(buckets.processed_keys()) == 12


async def test_a_replaced_object_is_processed_by_its_own_event_only(
    processor: Served, buckets: Buckets, mongo_db: Any
) -> None:
    old = buckets.upload("profile.jpg", by_name("baseline-jpeg").data)
    new = buckets.upload("profile.jpg", by_name("webp").data)

    stale = await deliver(processor, old)
    fresh = await deliver(processor, new)

    assert (stale[1].get_type(), stale[2]["reason"]) == (REJECTED, "superseded")  # type: ignore[union-attr]
    assert fresh[1].get_type() == PROCESSED  # type: ignore[union-attr]
    assert fresh[2]["source"]["format"] == "WEBP"
    documents = await mongo_db["images"].find({}).to_list(None)
    assert [d["etag"] for d in documents] == [new["s3"]["object"]["eTag"]]


async def test_a_newer_upload_marks_the_older_record_superseded(
    processor: Served, buckets: Buckets, mongo_db: Any
) -> None:
    old = buckets.upload("avatar.jpg", by_name("baseline-jpeg").data)
    await deliver(processor, old)
    new = buckets.upload("avatar.jpg", by_name("tiff").data)

    await deliver(processor, new)

    by_etag = {d["etag"]: d async for d in mongo_db["images"].find({})}
    old_etag, new_etag = old["s3"]["object"]["eTag"], new["s3"]["object"]["eTag"]
    assert by_etag[old_etag]["superseded_by"] == new_etag
    assert by_etag[new_etag].get("superseded_by") is None


async def test_an_object_deleted_before_processing_is_not_an_error(
    processor: Served, buckets: Buckets, mongo_db: Any
) -> None:
    record = s3_record(buckets.uploads, "gone.jpg", etag="0" * 32, size=10)

    status, reply, data = await deliver(processor, record)

    assert status == 200
    assert (reply.get_type(), data["reason"]) == (REJECTED, "missing")  # type: ignore[union-attr]
    assert await mongo_db["images"].count_documents({}) == 0


async def test_uploads_over_the_size_cap_are_rejected(
    service_env: dict[str, str], buckets: Buckets, mongo_db: Any
) -> None:
    data = by_name("cmyk-jpeg").data
    small_cap = processor_settings(service_env, buckets, max_source_bytes=len(data) - 1)
    truthful = buckets.upload("big.jpg", data)
    lying = {
        **truthful,
        "s3": {**truthful["s3"], "object": {**truthful["s3"]["object"], "size": 10}},
    }

    async with serve(create_app(small_cap)) as processor:
        by_event_size = await deliver(processor, truthful)
        by_streamed_size = await deliver(processor, lying, event_id="lying")

    assert by_event_size[2]["reason"] == "too_large"
    # The event claimed 10 bytes; the stream is cut off at the cap all the same.
    assert by_streamed_size[2]["reason"] == "too_large"


async def test_keys_with_control_characters_stay_inside_the_processed_prefix(
    processor: Served, buckets: Buckets
) -> None:
    record = buckets.upload("evil\n\x01/..x\\y.jpg", by_name("baseline-jpeg").data)

    status, _, data = await deliver(processor, record)

    assert status == 200
    for key in buckets.processed_keys():
        assert key.startswith("processed/")
        assert not any(ord(c) < 32 or c == "\\" for c in key)
    assert len(data["renditions"]) == 2


@pytest.mark.parametrize(
    "change",
    [
        {"s3": None},
        {"s3": {"bucket": {"name": "uploads"}}},
        {"s3": {"bucket": {"name": "uploads"}, "object": {"key": "a.jpg"}}},
        {"s3": {"bucket": {"name": "uploads"}, "object": {"key": "a.jpg", "eTag": "<script>"}}},
        {
            "s3": {
                "bucket": {"name": "uploads"},
                "object": {"key": "a.jpg", "eTag": "abc", "size": -1},
            }
        },
        {"s3": {"bucket": {"name": "uploads"}, "object": {"key": {"$ne": None}, "eTag": "abc"}}},
    ],
    ids=["no-s3", "no-object", "no-etag", "bad-etag", "negative-size", "operator-key"],
)
async def test_malformed_records_get_422(processor: Served, change: dict[str, Any]) -> None:
    record = {**s3_record("uploads", "a.jpg"), **change}

    status, _, error = await deliver(processor, record)

    assert status == 422
    assert error["error"]["code"] == "invalid_data"


async def test_events_of_other_buckets_are_refused(processor: Served, buckets: Buckets) -> None:
    status, _, error = await deliver(processor, s3_record(buckets.processed, "x.jpg"))

    assert status == 422
    assert buckets.processed in error["error"]["message"]


async def test_minio_down_is_a_503_and_the_retry_succeeds(
    processor: Served, buckets: Buckets, minio_server: MinioServer, mongo_db: Any
) -> None:
    record = buckets.upload("retry.jpg", by_name("baseline-jpeg").data)
    minio_server.stop()
    try:
        status, _, error = await deliver(processor, record, event_id="retried")
    finally:
        minio_server.start()

    retried = await deliver(processor, record, event_id="retried")

    assert status == 503
    assert error["error"]["code"] == "object_storage_unavailable"
    assert retried[0] == 200
    assert retried[1].get_type() == PROCESSED  # type: ignore[union-attr]
    assert await mongo_db["images"].count_documents({"status": "processed"}) == 1


async def test_the_latest_record_of_an_upload_can_be_looked_up(
    processor: Served, buckets: Buckets
) -> None:
    record = buckets.upload("look/up.png", by_name("palette-png").data)
    await deliver(processor, record)

    found = await processor.client.get(f"/images/{buckets.uploads}/look/up.png")
    missing = await processor.client.get(f"/images/{buckets.uploads}/never.png")

    assert found.status_code == 200
    body = found.json()
    assert body["status"] == "processed"
    assert {r["key"] for r in body["renditions"]} == {
        "processed/look/up/thumbnail.webp",
        "processed/look/up/medium.webp",
    }
    assert datetime.fromisoformat(body["expires_at"]) > datetime.fromisoformat(body["processed_at"])
    assert missing.status_code == 404


async def test_the_same_bytes_uploaded_after_cleanup_are_processed_again(
    processor: Served, buckets: Buckets, mongo_db: Any
) -> None:
    record = buckets.upload("again.jpg", by_name("baseline-jpeg").data)
    await deliver(processor, record)
    # What the cleanup job does when the record expires: renditions and record go.
    for key in buckets.processed_keys():
        buckets.minio.remove_object(buckets.processed, key)
    await mongo_db["images"].delete_many({})
    reuploaded = buckets.upload("again.jpg", by_name("baseline-jpeg").data)

    status, reply, _ = await deliver(processor, reuploaded)

    assert reuploaded["s3"]["object"]["eTag"] == record["s3"]["object"]["eTag"]
    assert (status, reply.get_type()) == (200, PROCESSED)  # type: ignore[union-attr]
    assert buckets.processed_keys() == [
        "processed/again/medium.webp",
        "processed/again/thumbnail.webp",
    ]
    assert await mongo_db["images"].count_documents({"status": "processed"}) == 1
