"""Hostile input against every route of every service and every CloudEvent ingress.

Each service runs as a real process on the real servers; its routes come from its own OpenAPI
document, so a new route or a new function is covered without touching this file. Every
request must get a 4xx (never a 5xx, never a dropped connection) and the process must live on.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import orjson
import pytest
from devplane.servers import FunctionProcess, MinioServer, MongoServer, free_port
from fnkit import Function
from minio.credentials.providers import StaticProvider
from minio.minioadmin import MinioAdmin

from tests.reliability.harness import early_answer
from tests.reliability.services import deployables, service_environment, started

pytestmark = pytest.mark.e2e

SERVICES = deployables()
SECRET_ENV = ("MINIO_SECRET_KEY", "WEBHOOK_AUTH_TOKEN")
# Distinctive, so that a grep finds them wherever they were copied (a URL, a traceback).
MONGO_PASSWORD = "mongo-pass-Xq7v"
MINIO_SECRET = "minio-secret-Kd3w"
DEEP = 100_000
NESTED = 10_000
HUGE = 12 * 1024 * 1024  # over every service's body limit (fnkit's default is 10 MiB)

HOSTILE_STRINGS = [
    "../../etc/passwd",
    "/etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    '{"$gt": ""}',
    "$where",
    "x" * 5000,
    "%00",
    "\u202e\ufeff",
]
# No None: an optional field takes null as "left out".
INJECTIONS: list[Any] = [{"$gt": ""}, {"$ne": None}, {"$where": "sleep(1000)"}, ["$in"]]


def body_corpus() -> list[tuple[str, dict[str, str], bytes]]:
    """(label, headers, body) that no route taking a JSON body may accept."""
    json_ct = {"content-type": "application/json"}
    return [
        ("empty", json_ct, b""),
        ("not json", json_ct, b"{not json"),
        ("invalid utf-8", json_ct, b'{"name": "\xff\xfe\xfd"}'),
        # Deep enough for any recursive parser, small enough for the tightest body limit.
        ("deep arrays", json_ct, b"[" * NESTED + b"]" * NESTED),
        ("deep objects", json_ct, b'{"a":' * NESTED + b"1" + b"}" * NESTED),
        ("json null", json_ct, b"null"),
        ("json number", json_ct, b"12"),
        ("json array", json_ct, b"[]"),
        (
            "operator injection",
            json_ct,
            orjson.dumps({"$where": "1", "$gt": "", "_id": {"$ne": 1}}),
        ),
        ("xml", {"content-type": "application/xml"}, b"<a>1</a>"),
        ("form", {"content-type": "application/x-www-form-urlencoded"}, b"a=1&$gt=2"),
    ]


def wrong_typed(schema: dict[str, Any], components: dict[str, Any]) -> list[dict[str, Any]]:
    """Objects with every declared property given values of the wrong type or an operator."""
    ref = schema.get("$ref")
    if ref:
        schema = components[ref.rsplit("/", 1)[1]]
    properties = schema.get("properties", {})
    if not properties:
        return []
    return [{name: value for name in properties} for value in [*INJECTIONS, [[]], 10**40, True]]


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield path, method.upper(), op


def fill(path: str, value: str) -> str:
    """The path with every parameter set to `value`, percent-encoded."""
    return re.sub(r"\{[^}]+\}", lambda _: quote(value, safe=""), path)


def with_password(url: str, password: str) -> str:
    """The MongoDB URL with credentials (PLAIN: FerretDB v1 takes it, and ignores them)."""
    parts = urlsplit(url)
    return f"mongodb://app:{password}@{parts.netloc}/?authMechanism=PLAIN&authSource=%24external"


@pytest.fixture(scope="module")
def minio_user(minio_server: MinioServer) -> tuple[str, str]:
    """A MinIO user of its own with a distinctive secret (the root's equals its user name)."""
    admin = MinioAdmin(
        endpoint=minio_server.endpoint,
        secure=False,
        credentials=StaticProvider(minio_server.access_key, minio_server.secret_key),
    )
    name = f"hostile-{uuid.uuid4().hex[:8]}"
    admin.user_add(name, MINIO_SECRET)
    admin.policy_set("readwrite", user=name)
    return name, MINIO_SECRET


def credentialed(env: dict[str, str], user: tuple[str, str]) -> dict[str, str]:
    """`env` with a password in MONGO_URL and a MinIO user's secret key."""
    return {
        **env,
        "MONGO_URL": with_password(env["MONGO_URL"], MONGO_PASSWORD),
        "MINIO_ACCESS_KEY": user[0],
        "MINIO_SECRET_KEY": user[1],
    }


@pytest.fixture(scope="module", params=sorted(SERVICES))
def service(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    mongo_server: MongoServer,
    minio_server: MinioServer,
    minio_user: tuple[str, str],
) -> Iterator[FunctionProcess]:
    name = request.param
    root = tmp_path_factory.mktemp(f"hostile-{name}")
    # Emits go nowhere (a closed port): nothing here should get as far as emitting.
    env = service_environment(
        mongo_server, minio_server, f"t_hostile_{uuid.uuid4().hex[:8]}", "http://127.0.0.1:9/"
    )
    yield from started(name, SERVICES[name], root, credentialed(env, minio_user))


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=60) as http:
        yield http


def large_bodies() -> list[tuple[str, bytes]]:
    return [
        ("12 MiB", b'{"x": "' + b"a" * HUGE + b'"}'),
        ("100k nested arrays", b"[" * DEEP + b"]" * DEEP),
        ("100k nested objects", b'{"a":' * DEEP + b"1" + b"}" * DEEP),
    ]


class Verdicts:
    """Every (request, status) pair, so that one failure lists all offenders at once."""

    def __init__(self) -> None:
        self.bad: list[str] = []
        self.count = 0
        self.bodies: list[str] = []

    def record(self, label: str, status: int | None) -> None:
        self.count += 1
        if status is None or not 400 <= status < 500:
            self.bad.append(f"{label} -> {status if status is not None else 'no answer'}")

    async def send(
        self,
        label: str,
        client: httpx.AsyncClient,
        method: str,
        url: str,
        allowed: range = range(400, 500),
        **kwargs: Any,
    ) -> None:
        self.count += 1
        try:
            response = await client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            self.bad.append(f"{label} -> no answer ({type(exc).__name__})")
            return
        self.bodies.append(response.text)
        if response.status_code not in allowed:
            self.bad.append(f"{label} -> {response.status_code} {response.text[:200]}")


async def test_every_route_answers_hostile_input_with_a_4xx(
    service: FunctionProcess, client: httpx.AsyncClient
) -> None:
    spec = (await client.get(f"{service.url}/openapi.json")).json()
    components = spec.get("components", {}).get("schemas", {})
    verdicts = Verdicts()
    for path, method, op in operations(spec):
        if path.startswith("/health") or path == "/metrics":
            continue
        for value in HOSTILE_STRINGS:
            url = service.url + fill(path, value)
            params = {p["name"]: value for p in op.get("parameters", []) if p["in"] == "query"}
            # A path parameter that is merely unknown may be a 404; a GET on a collection with
            # an odd filter may be an empty 200 page. Never a 5xx.
            label = f"{method} {path} [{value[:20]!r}]"
            await verdicts.send(label, client, method, url, range(200, 500), params=params)
        body = op.get("requestBody")
        if body is None:
            continue
        url = service.url + fill(path, "hostile-id")
        for label, headers, payload in body_corpus():
            await verdicts.send(
                f"{method} {path} [{label}]", client, method, url, headers=headers, content=payload
            )
        schema = body.get("content", {}).get("application/json", {}).get("schema", {})
        for payload_obj in wrong_typed(schema, components):
            label = f"{method} {path} [wrong types {str(payload_obj)[:40]}]"
            await verdicts.send(label, client, method, url, json=payload_obj)
        json_ct = {"content-type": "application/json"}
        for label, payload in large_bodies():
            status = await early_answer(url, method, json_ct, payload)
            verdicts.record(f"{method} {path} [{label}]", status)
    assert service.process is not None and service.process.poll() is None, service.log_tail()
    assert (await client.get(f"{service.url}/health/liveness")).status_code == 200
    assert not verdicts.bad, f"{len(verdicts.bad)}/{verdicts.count}:\n" + "\n".join(verdicts.bad)
    assert_no_secrets(service, verdicts)


def event_corpus(handled: list[str]) -> list[tuple[str, dict[str, str], bytes]]:
    """(label, headers, body) that no CloudEvent ingress may accept."""

    def binary(event_type: str, **extra: str) -> dict[str, str]:
        return {
            "ce-specversion": "1.0",
            "ce-id": uuid.uuid4().hex,
            "ce-source": "/tests/hostile",
            "ce-type": event_type,
            "content-type": "application/json",
            **extra,
        }

    known = handled[0] if handled else "io.knative-playbook.test.hostile.v1"
    structured = {"content-type": "application/cloudevents+json"}
    corpus = [
        ("no attributes", {"content-type": "text/plain"}, b"hello"),
        ("missing id", {k: v for k, v in binary(known).items() if k != "ce-id"}, b"{}"),
        ("specversion 0.3", {**binary(known), "ce-specversion": "0.3"}, b"{}"),
        ("bad time", {**binary(known), "ce-time": "yesterday"}, b"{}"),
        ("batch", {"content-type": "application/cloudevents-batch+json"}, b"[]"),
        ("structured not json", structured, b"{oops"),
        ("structured array", structured, b"[1]"),
        ("structured deep", structured, b'{"a":' * DEEP + b"1" + b"}" * DEEP),
        ("deep data", binary(known), b"[" * NESTED + b"]" * NESTED),
        ("invalid utf-8 data", binary(known), b'{"k": "\xff\xfe"}'),
        ("invalid utf-8 attribute", {**binary(known), "ce-subject": "\udcff"}, b"{}"),
    ]
    for event_type in handled:
        data: Any
        for data in [None, [], "text", 12, {"$where": "1"}, {"bucket": {"$ne": ""}}]:
            corpus.append((f"{event_type} data={data!r}", binary(event_type), orjson.dumps(data)))
        forged = binary(
            event_type,
            **{
                "ce-knativeerrordest": "http://127.0.0.1:9/",
                "ce-knativeerrorcode": "500",
                "ce-knativeerrordata": base64.b64encode(b"forged").decode(),
            },
        )
        corpus.append((f"{event_type} forged dead letter", forged, b"{}"))
    return corpus


async def test_the_event_ingress_answers_hostile_events_with_a_4xx(
    service: FunctionProcess, client: httpx.AsyncClient
) -> None:
    handled = handled_types(SERVICES[service.name])
    function = function_of(SERVICES[service.name])
    # A dead-letter sink keeps what it is given (Knative never retries a 400): raw bytes too.
    keeps_raw_bytes = function is not None and function.raw_header_bytes
    verdicts = Verdicts()
    for label, headers, body in event_corpus(handled):
        encoded = {k: v.encode("utf-8", "surrogateescape") for k, v in headers.items()}
        allowed = range(400, 500)
        if keeps_raw_bytes and label == "invalid utf-8 attribute":
            allowed = range(200, 300)
        url = f"{service.url}/"
        await verdicts.send(label, client, "POST", url, allowed, headers=encoded, content=body)
    for label, body in large_bodies():
        headers = {
            "ce-specversion": "1.0",
            "ce-id": uuid.uuid4().hex,
            "ce-source": "/tests/hostile",
            "ce-type": handled[0] if handled else "io.knative-playbook.test.hostile.v1",
            "content-type": "application/json",
        }
        verdicts.record(label, await early_answer(f"{service.url}/", "POST", headers, body))
    assert service.process is not None and service.process.poll() is None, service.log_tail()
    assert not verdicts.bad, f"{len(verdicts.bad)}/{verdicts.count}:\n" + "\n".join(verdicts.bad)
    assert_no_secrets(service, verdicts)


def secrets_of(env: dict[str, str]) -> list[str]:
    """The credentials in a service's environment: secret variables, and URLs' passwords."""
    found = [env[name] for name in SECRET_ENV if env.get(name)]
    found += [urlsplit(value).password or "" for value in env.values() if "://" in value]
    assert MONGO_PASSWORD in found and MINIO_SECRET in found  # this grep looks for both
    return [secret for secret in found if secret]


def assert_no_secrets(service: FunctionProcess, verdicts: Verdicts) -> None:
    """Neither an error body nor a log line may carry a credential the service was given."""
    assert_not_in_log_or_bodies(service.name, secrets_of(service.env), service.log_path, verdicts)


def assert_not_in_log_or_bodies(
    name: str, secrets: list[str], log_path: Path | None, verdicts: Verdicts
) -> None:
    assert log_path is not None
    log = log_path.read_text(errors="replace")
    for secret in secrets:
        assert secret not in log, f"{name} logged a secret"
        assert not any(secret in body for body in verdicts.bodies), f"{name} answered one"


def function_of(module: str) -> Function[Any] | None:
    """The service's fnkit Function (devplane's app is its own ASGI front: None)."""
    module_name, attr = module.split(":")
    app = getattr(importlib.import_module(module_name), attr)
    return app if isinstance(app, Function) else None


def handled_types(module: str) -> list[str]:
    """The event types the service's app registers (devplane routes any type: none)."""
    function = function_of(module)
    return function.handled_types if function is not None else []


async def test_no_secret_in_answers_or_logs_while_the_dependencies_refuse(
    tmp_path: Path, mongo_server: MongoServer, minio_server: MinioServer
) -> None:
    """pymongo's and MinIO's errors surface in readiness bodies and logs: none names a secret.

    MONGO_URL (with its password) points at a closed port; MinIO is given a key it does not
    know. Every service answers its readiness probe, a read on each route and an event of each
    type it handles, all of which reach the failing client.
    """
    env = service_environment(
        mongo_server, minio_server, f"t_leak_{uuid.uuid4().hex[:8]}", "http://127.0.0.1:9/"
    )
    env = {
        **env,
        "MONGO_URL": with_password(f"mongodb://127.0.0.1:{free_port()}/", MONGO_PASSWORD),
        "MINIO_ACCESS_KEY": "nobody",
        "MINIO_SECRET_KEY": MINIO_SECRET,
    }
    processes = [
        FunctionProcess(
            name,
            free_port(),
            tmp_path / name,
            env={**env, "DEVPLANE_URL": "http://127.0.0.1:9"},
            module=module,
            log_path=tmp_path / f"{name}.log",
        )
        for name, module in sorted(SERVICES.items())
    ]
    await asyncio.gather(*(asyncio.to_thread(p.start) for p in processes))
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            for process in processes:
                verdicts = Verdicts()
                await refused_reads(client, process, verdicts)
                assert_not_in_log_or_bodies(
                    process.name, secrets_of(process.env), process.log_path, verdicts
                )
    finally:
        for process in processes:
            process.stop()


async def refused_reads(
    client: httpx.AsyncClient, process: FunctionProcess, verdicts: Verdicts
) -> None:
    """Readiness, every GET route with ids of the usual shapes, an event of each type."""
    everything = range(200, 600)
    await verdicts.send("readiness", client, "GET", f"{process.url}/health/readiness", everything)
    spec = (await client.get(f"{process.url}/openapi.json")).json()
    for path, method, _ in operations(spec):
        if method == "GET":
            for value in ("0" * 24, "0" * 32):
                url = process.url + fill(path, value)
                await verdicts.send(f"GET {path}", client, "GET", url, everything)
    for event_type in handled_types(SERVICES[process.name]):
        headers = {
            "ce-specversion": "1.0",
            "ce-id": uuid.uuid4().hex,
            "ce-source": "/tests/leak",
            "ce-type": event_type,
            "content-type": "application/json",
        }
        url = f"{process.url}/"
        await verdicts.send(event_type, client, "POST", url, everything, headers=headers, json={})
