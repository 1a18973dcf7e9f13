"""cleanup against real MongoDB and MinIO, run as the CronJob runs it: `python -m cleanup`."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from devplane.servers import MinioServer, free_port
from fnkit.idempotency import COLLECTION as IDEMPOTENCY_COLLECTION
from fnkit.idempotency import IdempotencyGuard
from minio.credentials.providers import StaticProvider
from minio.minioadmin import MinioAdmin

from tests.cleanup.helpers import Store, kill_after_first_batch, owned, run_cleanup

pytestmark = pytest.mark.integration


def leftovers(store: Store, records: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """Objects still in the buckets that belong to none of `records`."""
    kept = set().union(*(owned(r) for r in records)) if records else set()
    return store.all_objects() - kept


@pytest.mark.timeout(1200)
async def test_ten_thousand_expired_records_go_with_their_objects_and_the_rest_stays(
    store: Store, job_env: dict[str, str]
) -> None:
    started = time.perf_counter()
    await store.seed(10_000, name="old")
    live = await store.seed(200, expired=False, name="new")
    seeded = time.perf_counter() - started

    run = await run_cleanup(job_env)

    summary = run.summary
    assert run.code == 0, run.lines[-3:]
    assert summary["scanned"] == summary["records_deleted"] == 10_000
    assert summary["objects_deleted"] == 10_000 * 3
    assert summary["errors"] == 0
    assert len(run.messages("batch")) == 10  # 1000 records a page
    remaining = await store.records()
    assert sorted(r["key"] for r in remaining) == sorted(r["key"] for r in live)
    assert store.all_objects() == set().union(*(owned(r) for r in live))
    print(
        f"\nseeded 10,200 records and 30,600 objects in {seeded:.0f}s; cleanup of 10,000 "
        f"records took {summary['duration_seconds']:.1f}s"
    )


async def test_objects_already_missing_count_as_gone(store: Store, job_env: dict[str, str]) -> None:
    documents = await store.seed(30, with_objects=10)
    # Half the renditions of the records that still have objects are gone too.
    for document in documents[:10:2]:
        store.minio.remove_object(store.processed, document["renditions"][0]["key"])

    run = await run_cleanup(job_env)

    assert run.code == 0, run.lines[-3:]
    assert run.summary["records_deleted"] == 30
    assert await store.records() == []
    assert store.all_objects() == set()


async def test_an_upload_replaced_since_keeps_its_new_object_and_renditions(
    store: Store, job_env: dict[str, str]
) -> None:
    [old] = await store.seed(1)
    # The key was uploaded again; its processing has not recorded anything yet.
    newer = store.put(store.uploads, old["key"], b"a newer upload")

    run = await run_cleanup(job_env)

    assert run.code == 0
    assert await store.records() == []
    assert store.all_objects() == owned(old)
    assert str(store.minio.stat_object(store.uploads, old["key"]).etag).strip('"') == newer
    assert run.summary["objects_skipped"] == 3


async def test_renditions_another_record_lists_stay(store: Store, job_env: dict[str, str]) -> None:
    [old] = await store.seed(1)
    # Another key with the same stem (cat.png after cat.jpg) writes the same rendition keys.
    twin = {**old, "key": old["key"].replace(".jpg", ".png"), "etag": "twin"}
    twin.pop("_id")
    twin["expires_at"] = datetime.now(UTC) + timedelta(days=1)
    store.put(store.uploads, twin["key"])
    await store.images.insert_one(twin)

    run = await run_cleanup(job_env)

    assert run.code == 0
    assert [r["key"] for r in await store.records()] == [twin["key"]]
    assert store.all_objects() == owned(twin)


async def test_max_age_expires_old_records_whatever_their_expiry(
    store: Store, job_env: dict[str, str]
) -> None:
    old = await store.seed(3, expired=False, processed_at=datetime.now(UTC) - timedelta(days=10))
    recent = await store.seed(2, expired=False)

    run = await run_cleanup({**job_env, "MAX_AGE_DAYS": "7"})

    assert run.code == 0
    assert run.summary["records_deleted"] == len(old)
    assert sorted(r["key"] for r in await store.records()) == sorted(r["key"] for r in recent)
    assert store.all_objects() == set().union(*(owned(r) for r in recent))


async def test_keep_originals_deletes_renditions_and_records_only(
    store: Store, job_env: dict[str, str]
) -> None:
    documents = await store.seed(4)

    run = await run_cleanup({**job_env, "KEEP_ORIGINALS": "true"})

    assert run.code == 0
    assert await store.records() == []
    assert store.all_objects() == {(d["bucket"], d["key"]) for d in documents}


async def test_dry_run_deletes_nothing_and_reports_what_it_would(
    store: Store, job_env: dict[str, str]
) -> None:
    expired = await store.seed(12)
    await store.seed(3, expired=False)
    orphan = f"processed/gone/{time.time_ns()}.webp"
    store.put(store.processed, orphan)
    before_objects, before_records = store.all_objects(), await store.records()
    await asyncio.sleep(1.5)

    run = await run_cleanup({**job_env, "ORPHAN_GRACE_HOURS": "0.0001"}, "--dry-run")

    assert run.code == 0
    assert store.all_objects() == before_objects
    assert await store.records() == before_records
    summary = run.summary
    assert summary["dry_run"] is True
    assert (summary["records_deleted"], summary["objects_deleted"]) == (12, 36)
    assert summary["orphans_deleted"] == 1
    [would] = run.messages("would delete")
    assert sorted(would["records"]) == sorted(str(d["_id"]) for d in expired)
    assert set(would["objects"]) == {f"{b}/{k}" for d in expired for b, k in owned(d)}
    assert run.messages("would delete orphans")[0]["objects"] == [orphan]
    assert await store.db["cleanup_state"].count_documents({}) == 0


async def test_orphaned_renditions_older_than_the_grace_period_go(
    store: Store, job_env: dict[str, str]
) -> None:
    [live] = await store.seed(1, expired=False)
    old_orphans = [f"processed/lost/{i}/256.webp" for i in range(5)]
    await store.put_many((store.processed, key, b"o") for key in old_orphans)
    grace = 8.0
    await asyncio.sleep(grace)
    young = "processed/in-flight/256.webp"  # written by image-processor a moment ago
    store.put(store.processed, young)
    env = {**job_env, "ORPHAN_GRACE_HOURS": str(grace / 3600), "ORPHAN_SCAN_LIMIT": "4"}

    first = await run_cleanup(env)
    second = await run_cleanup(env)

    assert (first.code, second.code) == (0, 0)
    # Four renditions looked at per run: the second run goes on where the first stopped.
    assert first.summary["orphans_scanned"] == 4
    assert first.summary["orphans_deleted"] + second.summary["orphans_deleted"] == 5
    assert store.objects(store.processed) == {young} | {r["key"] for r in live["renditions"]}
    assert await store.records() != []


async def test_an_object_minio_refuses_to_delete_keeps_its_record_and_fails_the_run(
    store: Store, job_env: dict[str, str], minio_server: MinioServer
) -> None:
    documents = await store.seed(5)
    # A user that may read the uploads bucket but not delete from it (a policy mistake).
    user, secret = f"cleanup-{store.uploads[-10:]}", "cleanup-secret-123"
    admin = MinioAdmin(
        endpoint=minio_server.endpoint,
        credentials=StaticProvider(minio_server.access_key, minio_server.secret_key),
        secure=False,
    )
    statements = [
        {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [f"arn:aws:s3:::{b}"]}
        for b in (store.uploads, store.processed)
    ] + [
        {
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [f"arn:aws:s3:::{store.uploads}/*"],
        },
        {
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:DeleteObject"],
            "Resource": [f"arn:aws:s3:::{store.processed}/*"],
        },
    ]
    admin.policy_add(user, policy={"Version": "2012-10-17", "Statement": statements})
    admin.user_add(user, secret)
    admin.attach_policy([user], user=user)

    run = await run_cleanup({**job_env, "MINIO_ACCESS_KEY": user, "MINIO_SECRET_KEY": secret})

    assert run.code == 1
    summary = run.summary
    assert (summary["records_deleted"], summary["records_kept"], summary["errors"]) == (0, 5, 5)
    assert "AccessDenied" in summary["problems"][0]
    assert len(await store.records()) == 5
    # The renditions went; the uploads and the records that list them stay for the next run.
    assert store.all_objects() == {(d["bucket"], d["key"]) for d in documents}

    retry = await run_cleanup(job_env)

    assert retry.code == 0
    assert await store.records() == []
    assert store.all_objects() == set()


async def test_minio_failing_mid_run_leaves_no_record_deleted_before_its_objects(
    store: Store, job_env: dict[str, str], minio_server: MinioServer
) -> None:
    await store.seed(600)
    env = {**job_env, "BATCH_SIZE": "100"}

    async def stop_minio(line: dict[str, Any], process: Any) -> None:
        if line.get("msg") == "batch" and line["batch"] == 1:
            await asyncio.to_thread(minio_server.stop)

    try:
        run = await run_cleanup(env, on_line=stop_minio)
    finally:
        minio_server.start()

    assert run.code == 1
    summary = run.summary
    assert summary["interrupted"].startswith("MinIO")
    assert 100 <= summary["records_deleted"] < 600
    remaining = await store.records()
    assert len(remaining) == 600 - summary["records_deleted"]
    assert leftovers(store, remaining) == set()  # every object left has its record

    rerun = await run_cleanup(env)

    assert rerun.code == 0
    assert rerun.summary["records_deleted"] == len(remaining)
    assert await store.records() == []
    assert store.all_objects() == set()


async def test_a_run_killed_mid_way_is_finished_by_the_next(
    store: Store, job_env: dict[str, str]
) -> None:
    await store.seed(600)
    env = {**job_env, "BATCH_SIZE": "100"}

    killed = await run_cleanup(env, on_line=kill_after_first_batch())

    assert killed.code == -9
    remaining = await store.records()
    assert 0 < len(remaining) < 600
    assert leftovers(store, remaining) == set()

    rerun = await run_cleanup(env)

    assert rerun.code == 0
    assert rerun.summary["records_deleted"] == len(remaining)
    assert await store.records() == []
    assert store.all_objects() == set()


async def test_two_runs_at_once_share_the_work_without_failing(
    store: Store, job_env: dict[str, str]
) -> None:
    await store.seed(1000)
    live = await store.seed(20, expired=False)
    env = {**job_env, "BATCH_SIZE": "100"}

    runs = await asyncio.gather(run_cleanup(env), run_cleanup(env))

    assert [r.code for r in runs] == [0, 0], [r.summary["problems"] for r in runs]
    # Each record was deleted exactly once, by one run or the other.
    assert sum(r.summary["records_deleted"] for r in runs) == 1000
    assert sorted(r["key"] for r in await store.records()) == sorted(r["key"] for r in live)
    assert store.all_objects() == set().union(*(owned(r) for r in live))


async def test_no_expired_records_is_a_quiet_success(store: Store, job_env: dict[str, str]) -> None:
    await store.seed(2, expired=False)

    run = await run_cleanup(job_env)

    assert run.code == 0
    assert run.summary["scanned"] == 0
    assert run.messages("batch") == []
    assert json.dumps(run.summary)  # the whole summary is one JSON object


async def test_unreachable_mongo_fails_the_run(store: Store, job_env: dict[str, str]) -> None:
    nowhere = {"MONGO_URL": "mongodb://127.0.0.1:9/", "MONGO_TIMEOUT_SECONDS": "1"}

    run = await run_cleanup({**job_env, **nowhere})

    assert run.code == 1
    assert run.summary["interrupted"].startswith("MongoDB")


async def test_a_record_without_its_fields_is_kept_and_reported(
    store: Store, job_env: dict[str, str]
) -> None:
    await store.seed(3)
    await store.images.insert_one(
        {"bucket": store.uploads, "key": "odd.jpg", "expires_at": datetime.now(UTC)}
    )

    run = await run_cleanup(job_env)

    assert run.code == 1
    assert (run.summary["records_deleted"], run.summary["records_kept"]) == (3, 1)
    assert "no bucket, key and etag" in run.summary["problems"][0]
    assert [r["key"] for r in await store.records()] == ["odd.jpg"]


async def test_a_broker_refusing_the_event_fails_the_run(
    store: Store, job_env: dict[str, str]
) -> None:
    await store.seed(2)
    nowhere = {"K_SINK": f"http://127.0.0.1:{free_port()}/", "EMIT_ATTEMPTS": "1"}

    run = await run_cleanup({**job_env, **nowhere})

    assert run.code == 1
    assert run.summary["records_deleted"] == 2  # the work is done; only the report is missing
    assert run.summary["event_id"] is None
    assert "cleanup.completed" in run.summary["emit_error"]


async def handled(guard: IdempotencyGuard, key: str) -> bool:
    """Deliver `key` to the guard; whether the work ran (False: absorbed as a duplicate)."""

    async def work() -> None:
        return None

    _, ran = await guard.run(key, work)
    return ran


@pytest.mark.parametrize("dry_run", [False, True])
async def test_idempotency_records_past_their_retention_go_and_the_rest_absorb_duplicates(
    store: Store, job_env: dict[str, str], dry_run: bool
) -> None:
    records = store.db[IDEMPOTENCY_COLLECTION]
    guards = [IdempotencyGuard(records, 30, name) for name in ("fn-a", "fn-b")]
    for guard in guards:
        for key in ("old", "recent"):
            assert await handled(guard, key)
    long_ago = datetime.now(UTC) - timedelta(days=10)
    await records.update_many({"_id": {"$regex": "old$"}}, {"$set": {"done_at": long_ago}})
    # A claim whose holder crashed 10 days ago and whose event never came back.
    await records.insert_one(
        {"_id": "fn-a\x1fabandoned", "state": "running", "owner": "gone", "lease_until": long_ago}
    )

    args = ("--dry-run",) if dry_run else ()
    run = await run_cleanup({**job_env, "IDEMPOTENCY_RETENTION_HOURS": "24"}, *args)

    assert run.code == 0, run.lines[-3:]
    assert run.summary["idempotency_records_deleted"] == 3
    left = sorted(d["_id"].split("\x1f")[1] for d in await records.find({}).to_list())
    if dry_run:
        assert left == ["abandoned", "old", "old", "recent", "recent"]
    else:
        assert left == ["recent", "recent"]
        assert not await handled(guards[0], "recent")  # a late duplicate is still absorbed
        assert await handled(guards[0], "old")  # past retention it would run again
