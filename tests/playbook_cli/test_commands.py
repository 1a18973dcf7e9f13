"""Each command against the running platform, as a user would type it."""

from __future__ import annotations

import io
import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from devplane.servers import FunctionProcess
from minio import Minio
from PIL import Image

from tests.playbook_cli.conftest import DOOMED, PLAYBOOK, Platform
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

PING = "io.knative-playbook.cli-test.ping.v1"
PROCESSED = "io.knative-playbook.image.processed.v1"


def photo(size: tuple[int, int] = (1200, 800)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (40, 120, 200)).save(buffer, "JPEG")
    return buffer.getvalue()


def logged(platform: Platform, **params: Any) -> list[dict[str, Any]]:
    response = httpx.get(f"{platform.url('devplane')}/events", params={"limit": 1000, **params})
    response.raise_for_status()
    events: list[dict[str, Any]] = response.json()["events"]
    return events


def dead_letters(platform: Platform, **params: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{platform.url('dead-letter')}/dead-letters", params=params)
    response.raise_for_status()
    items: list[dict[str, Any]] = response.json()["items"]
    return items


# -- send ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_send_posts_to_the_broker_with_data_from_a_file(
    platform: Platform, tmp_path: Path, mode: str
) -> None:
    data = tmp_path / "ping.json"
    data.write_text(json.dumps({"hello": "world", "mode": mode}))
    event_id = f"cli-{uuid.uuid4().hex[:8]}"
    args = ["send", PING, "--data", str(data), "--id", event_id, "-e", "bucket=uploads"]

    result = platform.playbook(*args, *(["--structured"] if mode == "structured" else []))

    assert result.returncode == 0, result.stderr
    assert f"sent {PING} id={event_id}" in result.stdout
    assert "HTTP 202" in result.stdout
    trace = result.stdout.split("trace ")[1].split()[0]
    [record] = logged(platform, id=event_id)
    assert (record["type"], record["source"], record["trace_id"]) == (PING, "/playbook-cli", trace)


def test_send_reads_stdin_and_prints_a_functions_reply(platform: Platform) -> None:
    key = f"cli/send-{uuid.uuid4().hex[:6]}.jpg"
    minio = Minio(
        platform.minio.endpoint, platform.minio.access_key, platform.minio.secret_key, secure=False
    )
    image = photo()
    etag = str(minio.put_object("uploads", key, io.BytesIO(image), len(image)).etag).strip('"')
    record = {"s3": {"bucket": {"name": "uploads"}, "object": {"key": key, "eTag": etag}}}

    result = platform.playbook(
        "--json",
        "send",
        "io.minio.s3.ObjectCreated.Put",
        "--data",
        "-",
        "--to",
        "image-processor",
        stdin=json.dumps(record),
    )

    assert result.returncode == 0, result.stderr
    [sent] = [json.loads(line) for line in result.stdout.splitlines()]
    assert sent["status"] == 200
    reply = sent["reply"]
    assert reply["type"] == PROCESSED
    assert reply["subject"] == f"uploads/{key}"
    assert {r["name"] for r in reply["data"]["renditions"]} == {"thumbnail", "medium"}
    # The trace is not compared: MinIO's own notification of this upload may have reached
    # image-processor first, and a repeat of the same upload gets that first reply.


def test_send_refuses_data_that_is_not_json(platform: Platform, tmp_path: Path) -> None:
    data = tmp_path / "bad.json"
    data.write_text("{not json")
    result = platform.playbook("send", PING, "--data", str(data))
    assert result.returncode == 1
    assert "not JSON" in result.stderr


def test_a_platform_that_does_not_answer_gets_a_hint(platform: Platform) -> None:
    result = platform.playbook("dlq", "list", env={"PLAYBOOK_DEAD_LETTER_URL": ""})
    assert result.returncode == 3
    assert "did not answer" in result.stderr
    assert "PLAYBOOK_URL" in result.stderr


# -- upload --------------------------------------------------------------------------------


def test_upload_waits_for_the_renditions_of_that_upload(platform: Platform, tmp_path: Path) -> None:
    picture = tmp_path / "sunset.jpg"
    picture.write_bytes(photo((2000, 1000)))
    key = f"cli/{uuid.uuid4().hex[:6]}/sunset.jpg"

    result = platform.playbook("upload", str(picture), "--key", key)

    assert result.returncode == 0, result.stderr
    assert f"processed uploads/{key}: JPEG 2000x1000, 2 renditions" in result.stdout
    assert "medium" in result.stdout and "1024x512" in result.stdout
    stem = key.removesuffix(".jpg")
    assert f"processed/processed/{stem}/thumbnail.webp" in result.stdout


def test_upload_reports_a_rejected_file_and_fails(platform: Platform, tmp_path: Path) -> None:
    fake = tmp_path / "notes.jpg"
    fake.write_text("these are not pixels")
    key = f"cli/{uuid.uuid4().hex[:6]}/notes.jpg"

    result = platform.playbook("--json", "upload", str(fake), "--key", key)

    assert result.returncode == 1
    record = json.loads(result.stdout.splitlines()[-1])
    assert (record["status"], record["reason"], record["key"]) == ("rejected", "not_an_image", key)


def test_upload_waits_for_the_new_version_not_an_older_record(
    platform: Platform, tmp_path: Path
) -> None:
    key = f"cli/{uuid.uuid4().hex[:6]}/again.jpg"
    first, second = tmp_path / "a.jpg", tmp_path / "b.jpg"
    first.write_bytes(photo((600, 400)))
    second.write_bytes(photo((900, 300)))
    assert platform.playbook("upload", str(first), "--key", key).returncode == 0

    result = platform.playbook("--json", "upload", str(second), "--key", key)

    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout.splitlines()[-1])
    assert (record["source"]["width"], record["source"]["height"]) == (900, 300)


# -- events tail ---------------------------------------------------------------------------


def test_tail_prints_the_latest_events_of_a_type_oldest_first(platform: Platform) -> None:
    kind = f"io.knative-playbook.cli-test.tail{uuid.uuid4().hex[:6]}.v1"
    ids = [f"t-{n}" for n in range(4)]
    for event_id in ids:
        assert platform.playbook("send", kind, "--id", event_id).returncode == 0
    assert platform.playbook("send", PING).returncode == 0

    shown = platform.json_lines("events", "tail", "--type", kind, "-n", "3")

    assert [e["id"] for e in shown] == ids[1:]
    assert {e["type"] for e in shown} == {kind}


def test_tail_follow_prints_each_new_event_once_with_where_it_went(platform: Platform) -> None:
    prefix = f"io.knative-playbook.cli-test.follow{uuid.uuid4().hex[:6]}"
    follower = subprocess.Popen(
        [
            str(PLAYBOOK),
            "events",
            "tail",
            "-f",
            "-n",
            "0",
            "--type",
            f"{prefix}.*",
            "--for",
            "20",
            "--interval",
            "0.2",
        ],
        env={**os.environ, **platform.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(2)  # the follower has read the log's end
        sent = []
        for n in range(3):
            kind = f"{prefix}.n{n}.v1"
            assert platform.playbook("send", kind, "--id", f"f-{n}").returncode == 0
            sent.append(kind)
        assert platform.playbook("send", PING).returncode == 0  # filtered out
        assert platform.playbook("send", DOOMED, "--id", "not-matching").returncode == 0
        stdout, stderr = follower.communicate(timeout=60)
    finally:
        follower.kill()
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert [line.split()[1] for line in lines] == sent, stderr
    assert all("-> no subscriber" in line for line in lines)


def test_tail_follow_waits_for_deliveries_to_settle(platform: Platform) -> None:
    event_id = f"doomed-{uuid.uuid4().hex[:6]}"
    follower = subprocess.Popen(
        [
            str(PLAYBOOK),
            "--json",
            "events",
            "tail",
            "-f",
            "-n",
            "0",
            "--type",
            DOOMED,
            "--for",
            "15",
            "--settle",
            "30",
        ],
        env={**os.environ, **platform.env},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(2)
        assert platform.playbook("send", DOOMED, "--id", event_id).returncode == 0
        stdout, _ = follower.communicate(timeout=60)
    finally:
        follower.kill()
    [event] = [json.loads(line) for line in stdout.splitlines()]
    assert event["id"] == event_id
    [delivery] = event["deliveries"]
    assert (delivery["subscriber"], delivery["outcome"]) == ("late-subscriber", "dead-lettered")


# -- dlq -----------------------------------------------------------------------------------


def test_dlq_list_show_replay_and_purge(platform: Platform, tmp_path: Path) -> None:
    kind = DOOMED
    event_id = f"dlq-{uuid.uuid4().hex[:6]}"
    data = tmp_path / "order.json"
    data.write_text(json.dumps({"sku": "sku-1", "qty": 2}))
    assert platform.playbook("send", kind, "--id", event_id, "--data", str(data)).returncode == 0
    wait_until(
        lambda: [d for d in dead_letters(platform, type=kind) if d["event_id"] == event_id],
        "the dead letter listed",
        every=0.25,
    )

    listed = platform.json_lines("dlq", "list", "--type", kind)
    [letter] = [item for item in listed if item["event_id"] == event_id]
    table = platform.playbook("dlq", "list", "--type", kind)
    assert letter["id"] in table.stdout
    assert letter["destination"] == f"http://127.0.0.1:{platform.late_port}"

    shown = platform.playbook("dlq", "show", letter["id"])
    assert shown.returncode == 0, shown.stderr
    assert f"{kind} id={event_id}" in shown.stdout
    assert '"sku": "sku-1"' in shown.stdout

    # The subscriber is fixed (started at last): the replay reaches it through the broker.
    subscriber = FunctionProcess(
        "late-subscriber",
        platform.late_port,
        platform.root / "late",
        env={"ENVIRONMENT": "dev"},
        module="fnkit.echo:app",
        log_path=platform.root / "late-subscriber.log",
    )
    subscriber.start()
    try:
        subscriber.wait_ready()
        replayed = platform.playbook("dlq", "replay", letter["id"], "--delete")
        assert replayed.returncode == 0, replayed.stderr
        assert f"{letter['id']}: delivered" in replayed.stdout
        assert "deleted" in replayed.stdout

        def delivered() -> list[dict[str, Any]]:
            return [
                e
                for e in logged(platform, id=event_id)
                if any(d["outcome"] == "delivered" for d in e["deliveries"])
            ]

        wait_until(delivered, "the late subscriber's deliveries", every=0.25)
    finally:
        subscriber.stop()
    assert not [d for d in dead_letters(platform, type=kind) if d["event_id"] == event_id]

    # purge: refused without --yes off a terminal, then done with it.
    for n in range(2):
        assert platform.playbook("send", kind, "--id", f"{event_id}-p{n}").returncode == 0
    wait_until(lambda: len(dead_letters(platform, type=kind)) >= 2, "two dead letters", every=0.25)
    refused = platform.playbook("dlq", "purge", "--type", kind)
    assert refused.returncode != 0
    assert "--yes" in refused.stderr
    assert len(dead_letters(platform, type=kind)) >= 2
    purged = platform.playbook("--json", "dlq", "purge", "--type", kind, "--yes")
    assert purged.returncode == 0, purged.stderr
    assert json.loads(purged.stdout)["deleted"] >= 2
    assert dead_letters(platform, type=kind) == []


def test_dlq_show_of_an_unknown_id_says_so(platform: Platform) -> None:
    result = platform.playbook("dlq", "show", "0" * 32)
    assert result.returncode == 1
    assert "HTTP 404" in result.stderr
