"""Health under dependency outages: real MongoDB and MinIO servers stopped and started again."""

from __future__ import annotations

from typing import Any

import pytest
from devplane.servers import MinioServer, MongoServer
from fnkit import Context, Function
from minio.credentials.providers import StaticProvider
from minio.minioadmin import MinioAdmin

from tests.fnkit.helpers import serve, settings_from, unique_name
from tests.fnkit.sample_functions import NOTED, PINGED, RECORDED, SampleSettings, create_app

pytestmark = pytest.mark.integration


async def test_liveness_answers_without_dependencies(plain_app: Function[SampleSettings]) -> None:
    async with serve(plain_app) as served:
        response = await served.client.get("/health/liveness")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readiness_lists_each_dependency(service_env: dict[str, str]) -> None:
    fn = create_app(unique_name(), settings_from(service_env), mongo=True, minio=True)

    async with serve(fn) as served:
        body = await served.wait_ready()

    assert body == {"status": "ready", "checks": {"setup": "ok", "mongodb": "ok", "minio": "ok"}}


async def test_readiness_fails_while_mongodb_is_down_and_recovers(
    mongo_app: Function[SampleSettings], mongo_server: MongoServer
) -> None:
    async with serve(mongo_app) as served:
        mongo_server.stop()
        try:
            down = await served.client.get("/health/readiness")
            during = await served.binary(RECORDED, {"key": "outage"}, id="evt-outage")
            route = await served.client.get("/records/anything")
        finally:
            mongo_server.start()
        up = await served.wait_ready()
        after = await served.binary(RECORDED, {"key": "outage"}, id="evt-outage")

    assert down.status_code == 503
    checks = down.json()["checks"]
    assert down.json()["status"] == "unavailable"
    assert checks["setup"] == "ok"
    assert checks["mongodb"] != "ok"
    assert up["checks"]["mongodb"] == "ok"

    assert during.status_code == 503
    assert during.json()["error"] == {
        "code": "database_unavailable",
        "message": "MongoDB is unavailable; retry later",
    }
    line = next(x for x in served.logs.named("invocation") if x["event_id"] == "evt-outage")
    assert (line["level"], line["outcome"], line["status"]) == ("warning", "failed", 503)
    assert line["error"].startswith("MongoDB is unavailable; retry later (ServerSelectionTimeout")
    assert route.status_code == 503
    assert route.json()["error"]["code"] == "database_unavailable"
    (route_line,) = served.logs.named("request failed")
    assert (route_line["path"], route_line["status"]) == ("/records/anything", 503)
    assert after.status_code == 200


async def test_readiness_fails_while_minio_is_down_and_recovers(
    service_env: dict[str, str], minio_server: MinioServer
) -> None:
    fn = create_app(unique_name(), settings_from(service_env), minio=True)

    async with serve(fn) as served:
        minio_server.stop()
        try:
            down = await served.client.get("/health/readiness")
            event = await served.binary(PINGED, {})
        finally:
            minio_server.start()
        up = await served.wait_ready()

    assert down.status_code == 503
    assert down.json()["checks"]["setup"] == "ok"
    assert down.json()["checks"]["minio"] != "ok"
    assert "mongodb" not in down.json()["checks"]
    assert event.status_code == 200  # handlers that do not touch MinIO keep working
    assert up["checks"]["minio"] == "ok"


async def test_minio_errors_in_a_handler_are_503(
    service_env: dict[str, str], minio_server: MinioServer
) -> None:
    fn: Function[SampleSettings] = Function(
        unique_name(),
        settings_class=SampleSettings,
        settings=settings_from(service_env),
        minio=True,
    )
    listed = "io.knative-playbook.test.listed.v1"

    @fn.on(listed)
    async def list_buckets(event: Any, ctx: Context[SampleSettings]) -> None:
        await ctx.run_blocking(ctx.minio.list_buckets)

    async with serve(fn) as served:
        ok = await served.binary(listed, {})
        minio_server.stop()
        try:
            down = await served.binary(listed, {})
        finally:
            minio_server.start()

    assert ok.status_code == 204
    assert down.status_code == 503
    assert down.json()["error"]["code"] == "object_storage_unavailable"


async def test_startup_hooks_retry_until_mongodb_is_back(
    mongo_app: Function[SampleSettings], mongo_server: MongoServer, mongo_db: Any
) -> None:
    mongo_server.stop()
    try:
        async with serve(mongo_app, ready=False) as served:
            (retry, *_) = await served.wait_for_log("start-up hook failed; retrying")
            waiting = await served.client.get("/health/readiness")
            event = await served.binary(NOTED, {})
            mongo_server.start()
            ready = await served.wait_ready()
            after = await served.binary(NOTED, {})
            ready_lines = served.logs.named("ready")
    finally:
        mongo_server.start()

    assert retry["hook"] == "create_indexes"
    assert waiting.status_code == 503
    checks = waiting.json()["checks"]
    assert checks["setup"].startswith("start-up hook create_indexes failed:")
    assert checks["mongodb"] != "ok"
    assert event.status_code == 503
    assert event.json()["error"]["code"] == "starting"
    assert ready["checks"] == {"setup": "ok", "mongodb": "ok"}
    assert after.status_code == 204
    (ready_line,) = ready_lines
    assert ready_line["startup_seconds"] > 0
    indexes = await mongo_db["records"].index_information()
    assert any(spec["key"] == [("receipt", 1)] for spec in indexes.values())


def _scoped_minio_user(server: MinioServer) -> tuple[str, str]:
    """A MinIO user allowed only objects of one bucket, as the chart creates per function."""
    admin = MinioAdmin(
        endpoint=server.endpoint,
        secure=False,
        credentials=StaticProvider(server.access_key, server.secret_key),
    )
    name = unique_name("scoped")
    secret = f"{name}-secret"
    admin.user_add(name, secret)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [f"arn:aws:s3:::{name}/*"]}
        ],
    }
    admin.policy_add(name, policy=policy)
    admin.policy_set(name, user=name)
    return name, secret


async def test_minio_key_scoped_to_its_bucket_is_ready(
    service_env: dict[str, str], minio_server: MinioServer
) -> None:
    access_key, secret_key = _scoped_minio_user(minio_server)
    settings = settings_from(service_env, minio_access_key=access_key, minio_secret_key=secret_key)
    fn = create_app(unique_name(), settings, minio=True)

    async with serve(fn) as served:
        body = await served.wait_ready()

    assert body["checks"]["minio"] == "ok"


async def test_wrong_minio_credentials_are_not_ready(
    service_env: dict[str, str], minio_server: MinioServer
) -> None:
    settings = settings_from(service_env, minio_secret_key="not-the-secret")
    fn = create_app(unique_name(), settings, minio=True)

    async with serve(fn, ready=False) as served:
        response = await served.client.get("/health/readiness")

    assert response.status_code == 503
    assert "SignatureDoesNotMatch" in response.json()["checks"]["minio"]
