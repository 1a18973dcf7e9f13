"""Configuration and the app's life: settings from the environment, secrets, registration."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest
from fnkit import CloudEvent, Context, Function, FunctionSettings
from fnkit.config import NoDecode
from pydantic import SecretStr, field_validator

from tests.fnkit.helpers import serve, unique_name
from tests.fnkit.sample_functions import NOTED, PINGED, SampleSettings, create_app

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("environment", ["production", "test"])
async def test_placeholder_minio_secrets_are_refused_outside_dev(
    environment: Literal["test", "production"],
) -> None:
    fn = create_app(unique_name(), SampleSettings(environment=environment), minio=True)

    with pytest.raises(RuntimeError) as refused:
        async with serve(fn):
            pass

    assert str(refused.value) == (
        f"{fn.name}: refusing to start with development placeholder secrets in "
        f"MINIO_ACCESS_KEY/MINIO_SECRET_KEY (ENVIRONMENT={environment}); "
        "set real secrets, or ENVIRONMENT=dev on a laptop"
    )


async def test_placeholder_password_in_the_mongo_url_is_refused() -> None:
    settings = SampleSettings(
        environment="production", mongo_url=SecretStr("mongodb://app:changeme@db.internal:27017")
    )
    fn = create_app(unique_name(), settings, mongo=True)

    with pytest.raises(RuntimeError, match=r"placeholder secrets in MONGO_URL \(ENVIRONMENT="):
        async with serve(fn):
            pass


async def test_placeholders_of_unused_clients_do_not_matter() -> None:
    settings = SampleSettings(
        environment="production", mongo_url=SecretStr("mongodb://app:changeme@db.internal:27017")
    )
    fn = create_app(unique_name(), settings)  # neither MongoDB nor MinIO

    async with serve(fn) as served:
        response = await served.binary(PINGED, {})

    assert response.status_code == 200


async def test_real_secrets_start_in_production() -> None:
    settings = SampleSettings(
        environment="production",
        minio_access_key="svc-images",
        minio_secret_key=SecretStr("k3JrT9x2Qm"),
    )
    fn = create_app(unique_name(), settings, minio=True)

    async with serve(fn, ready=False) as served:
        response = await served.client.get("/health/liveness")

    assert response.status_code == 200


async def test_dev_allows_placeholders() -> None:
    fn = create_app(unique_name(), SampleSettings(environment="dev"), minio=True)

    async with serve(fn, ready=False) as served:
        response = await served.client.get("/health/liveness")

    assert response.status_code == 200


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREETING", "bonjour")
    monkeypatch.setenv("MAX_EVENT_BYTES", "2048")
    monkeypatch.setenv("ENVIRONMENT", "dev")
    fn = create_app(unique_name())

    assert (fn.settings.greeting, fn.settings.max_event_bytes) == ("bonjour", 2048)
    assert fn.settings.environment == "dev"


def test_settings_default_to_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENVIRONMENT", raising=False)

    assert FunctionSettings().environment == "production"


@pytest.mark.parametrize(("name", "value"), [("MAX_EVENT_BYTES", "0"), ("ENVIRONMENT", "prod")])
def test_invalid_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)

    with pytest.raises(ValueError, match=name.lower()):
        FunctionSettings()


async def test_an_app_can_be_served_again_in_the_same_process(
    plain_app: Function[SampleSettings],
) -> None:
    async with serve(plain_app) as served:
        first = await served.binary(PINGED, {})
    async with serve(plain_app) as served:
        second = await served.binary(PINGED, {})
        ready_lines = served.logs.named("ready")

    assert first.status_code == second.status_code == 200
    assert len(ready_lines) == 1


async def test_shutdown_hooks_run_and_their_failures_are_logged() -> None:
    fn = create_app(unique_name(), SampleSettings(environment="dev"))
    ran: list[str] = []

    @fn.on_shutdown
    async def broken(ctx: Context[SampleSettings]) -> None:
        raise RuntimeError("cannot flush")

    @fn.on_shutdown
    async def flush(ctx: Context[SampleSettings]) -> None:
        ran.append(ctx.name)

    async with serve(fn) as served:
        pass
    lines = [line["msg"] for line in served.logs.lines]

    assert ran == [fn.name]
    assert lines.index("shutdown hook failed") < lines.index("stopped")


def test_an_event_type_gets_one_handler() -> None:
    fn = create_app(unique_name(), SampleSettings(environment="dev"))

    async def another(event: CloudEvent, ctx: Context[SampleSettings]) -> None:
        return None

    with pytest.raises(ValueError, match=f"{PINGED!r} already has a handler"):
        fn.on(PINGED)(another)


def test_idempotent_handlers_need_mongo() -> None:
    fn = create_app(unique_name(), SampleSettings(environment="dev"))

    with pytest.raises(ValueError, match="idempotent handlers need mongo=True"):
        fn.on("io.knative-playbook.test.other.v1", idempotent=True)


def test_handled_types_are_listed() -> None:
    fn = create_app(unique_name(), SampleSettings(environment="dev"))

    assert PINGED in fn.handled_types
    assert NOTED in fn.handled_types
    assert fn.handled_types == sorted(fn.handled_types)


async def test_clients_a_function_did_not_ask_for_are_refused(
    plain_app: Function[SampleSettings],
) -> None:
    async with serve(plain_app) as served:
        ctx = served.fn.context
        assert ctx is not None
        with pytest.raises(RuntimeError, match="was not created with mongo=True"):
            _ = ctx.db
        with pytest.raises(RuntimeError, match="was not created with minio=True"):
            _ = ctx.minio
        with pytest.raises(RuntimeError, match="needs mongo=True for idempotency"):
            await ctx.once("key", lambda: None)  # type: ignore[arg-type,return-value]


class _Listy(FunctionSettings):
    hosts: list[str] = []
    limits: dict[str, int] | None = None
    tags: Annotated[list[str], NoDecode] = []

    @field_validator("tags", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return value.split(",") if isinstance(value, str) else value


def test_structured_settings_are_json_and_the_rest_strings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTS", '["a", "b"]')
    monkeypatch.setenv("limits", '{"x": 3}')
    monkeypatch.setenv("TAGS", "red,blue")
    monkeypatch.setenv("Emit_Attempts", "7")

    settings = _Listy(mongo_db="given")

    assert (settings.hosts, settings.limits, settings.tags) == (
        ["a", "b"],
        {"x": 3},
        ["red", "blue"],
    )
    assert (settings.emit_attempts, settings.mongo_db) == (7, "given")


def test_a_structured_setting_that_is_not_json_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTS", "a,b")

    with pytest.raises(ValueError, match="HOSTS is not valid JSON"):
        _Listy()
