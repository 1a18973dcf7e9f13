"""The setup command against a real MinIO server with webhook targets configured by env."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from devplane.servers import MinioServer, free_port
from minio import Minio
from minio.notificationconfig import NotificationConfig, PrefixFilterRule, QueueConfig
from minio_source.setup import SetupError, apply, main

from tests.minio_source.servers import (
    TARGET_ID,
    run_setup,
    setup_settings,
    source_env,
    webhook_minio,
)

pytestmark = pytest.mark.integration

OURS = f"arn:minio:sqs::{TARGET_ID}:webhook"
OTHER_ARN = "arn:minio:sqs::OTHER:webhook"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MinioServer]:
    root = tmp_path_factory.mktemp("setup-minio")
    other = {
        "MINIO_NOTIFY_WEBHOOK_ENABLE_OTHER": "on",
        "MINIO_NOTIFY_WEBHOOK_ENDPOINT_OTHER": f"http://127.0.0.1:{free_port()}/other",
        "MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_OTHER": str(root / "other-queue"),
    }
    server = webhook_minio(root, free_port(), **other)
    server.start()
    yield server
    server.stop()


def client(server: MinioServer) -> Minio:
    return Minio(server.endpoint, server.access_key, server.secret_key, secure=False)


def rules(server: MinioServer, bucket: str) -> list[tuple[str, tuple[str, ...]]]:
    config = client(server).get_bucket_notification(bucket)
    return sorted((str(q.queue), tuple(q.events)) for q in config.queue_config_list)


def test_the_command_creates_buckets_and_notification_and_is_idempotent(
    server: MinioServer,
) -> None:
    env = source_env(server, UPLOADS_BUCKET="up-idem", PROCESSED_BUCKET="out-idem")

    first = run_setup(env, "--wait", "10")
    second = run_setup(env, "--wait", "10")

    assert first.returncode == 0, first.stderr
    assert "created bucket up-idem" in first.stderr
    assert "created bucket out-idem" in first.stderr
    assert second.returncode == 0, second.stderr
    assert "nothing to change" in second.stderr
    assert client(server).bucket_exists("out-idem")
    assert rules(server, "up-idem") == [(OURS, ("s3:ObjectCreated:*",))]
    assert rules(server, "out-idem") == []


def test_rules_of_other_targets_are_kept(server: MinioServer) -> None:
    minio = client(server)
    minio.make_bucket("up-shared")
    theirs = QueueConfig(
        queue=OTHER_ARN,
        events=["s3:ObjectRemoved:*"],
        config_id="theirs",
        prefix_filter_rule=PrefixFilterRule("audit/"),
    )
    minio.set_bucket_notification("up-shared", NotificationConfig(queue_config_list=[theirs]))

    changes = apply(setup_settings(server, uploads_bucket="up-shared"), wait=30)

    assert changes == ["created bucket processed", f"up-shared: s3:ObjectCreated:* -> {OURS}"]
    assert rules(server, "up-shared") == [
        (OTHER_ARN, ("s3:ObjectRemoved:*",)),
        (OURS, ("s3:ObjectCreated:*",)),
    ]


def test_a_changed_event_list_replaces_ours(server: MinioServer) -> None:
    apply(setup_settings(server, uploads_bucket="up-events"), wait=30)

    changes = apply(
        setup_settings(
            server,
            uploads_bucket="up-events",
            notify_events=["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
        ),
        wait=30,
    )

    assert len(changes) == 1
    assert rules(server, "up-events") == [(OURS, ("s3:ObjectCreated:*", "s3:ObjectRemoved:*"))]


def test_an_unknown_webhook_target_fails_with_the_fix(server: MinioServer) -> None:
    with pytest.raises(SetupError) as failed:
        apply(setup_settings(server, uploads_bucket="up-unknown", notify_target_id="NOPE"), wait=1)

    assert "arn:minio:sqs::NOPE:webhook" in str(failed.value)
    assert "MINIO_NOTIFY_WEBHOOK_ENABLE_<ID>" in str(failed.value)


def test_an_unreachable_minio_fails_after_the_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name, value in source_env(MinioServer("minio", free_port(), tmp_path)).items():
        monkeypatch.setenv(name, value)

    with caplog.at_level(logging.INFO, logger="minio_source.setup"):
        status = main(["--wait", "1"])

    assert status == 1
    assert "is not usable" in caplog.text


def test_the_command_started_before_minio_waits_for_it_and_its_targets(tmp_path: Path) -> None:
    # As in compose and the chart's hook Job: the command may start before MinIO, and MinIO
    # answers requests before it has loaded its webhook targets in the background.
    late = webhook_minio(tmp_path, free_port())
    env = source_env(late, UPLOADS_BUCKET="up-late")
    command = subprocess.Popen(
        [sys.executable, "-m", "minio_source.setup", "--wait", "60"],
        env={**os.environ, **env},
        stderr=subprocess.PIPE,
        text=True,
    )
    assert command.stderr is not None
    try:
        before_minio: list[str] = []  # the command's lines up to its first wait for MinIO
        while not before_minio or "waiting for MinIO" not in before_minio[-1]:
            line = command.stderr.readline()
            if not line:
                break
            before_minio.append(line)
        late.start()
        _, stderr = command.communicate(timeout=90)
        configured = rules(late, "up-late")
    finally:
        command.kill()
        late.stop()

    assert "waiting for MinIO" in before_minio[-1], before_minio
    assert command.returncode == 0, stderr
    assert configured == [(OURS, ("s3:ObjectCreated:*",))]
