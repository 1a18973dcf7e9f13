"""One trace id from the event a user sends to the last function it reaches, in every log
line and, with OpenTelemetry on, in spans that form one tree.

The chain: `playbook send` (with a traceparent) -> devplane -> image-processor, whose reply
(image.processed) -> devplane -> echo, a subscriber added by values like any user's. Both
functions export spans to a real OTLP/HTTP receiver.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from devplane.servers import FunctionProcess, MinioServer, free_port
from minio import Minio
from PIL import Image

from tests.observability.otlp import ReceivedSpan, Receiver, otlp_receiver
from tests.observability.rest_emitter import THING_CREATED
from tests.support.processes import ProcessGroup, shared_env
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = Path(sys.executable).parent / "playbook"
PUT = "io.minio.s3.ObjectCreated.Put"
PROCESSED = "io.knative-playbook.image.processed.v1"
ECHOED = "io.knative-playbook.echo.replied.v1"
CONSUMER = 5  # OTLP's SPAN_KIND_CONSUMER


def log_lines(proc: FunctionProcess) -> list[dict[str, Any]]:
    assert proc.log_path is not None
    return [
        orjson.loads(raw) for raw in proc.log_path.read_text().splitlines() if raw.startswith("{")
    ]


def invocations(proc: FunctionProcess, event_type: str) -> list[dict[str, Any]]:
    return [
        line
        for line in log_lines(proc)
        if line.get("msg") == "invocation" and line.get("type") == event_type
    ]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with otlp_receiver() as running:
        yield running


@pytest.fixture(scope="module")
def chain(
    tmp_path_factory: pytest.TempPathFactory,
    mongo_server: Any,
    minio_server: MinioServer,
    receiver: Receiver,
) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("traced")
    minio = Minio(
        minio_server.endpoint, minio_server.access_key, minio_server.secret_key, secure=False
    )
    for bucket in ("uploads", "processed"):
        if not minio.bucket_exists(bucket):
            minio.make_bucket(bucket)
    plane_port = free_port()
    plane_url = f"http://127.0.0.1:{plane_port}"
    db = f"t_trace_{uuid.uuid4().hex[:8]}"
    common = {**shared_env(mongo_server.url, db, minio_server), "K_SINK": plane_url}
    traced = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # export within a tenth of a second, not five
    }
    with ProcessGroup(root) as group:
        processor = group.start(
            "image-processor", "image_processor.main:app", free_port(), {**common, **traced}
        )
        echo = group.start("echo", "fnkit.echo:app", free_port(), {**common, **traced})
        emitter = group.start(
            "rest-emitter", "tests.observability.rest_emitter:app", free_port(), common
        )
        chart = yaml.safe_load((REPO / "charts/knative-playbook/values.yaml").read_text())
        functions: dict[str, Any] = {name: {"enabled": False} for name in chart["functions"]}
        functions["image-processor"] = {"enabled": True, "url": processor.url}
        functions["echo"] = {
            "url": echo.url,
            "triggers": [{"name": "processed", "filter": {"attributes": {"type": PROCESSED}}}],
        }
        values = root / "values.yaml"
        values.write_text(
            json.dumps(
                {
                    "functions": functions,
                    "cronJobs": {name: {"enabled": False} for name in chart.get("cronJobs", {})},
                }
            )
        )
        devplane = group.start_devplane(plane_port, common, values)
        group.wait_ready(60)
        yield {
            "processor": processor,
            "echo": echo,
            "devplane": devplane,
            "emitter": emitter,
            "minio": minio,
        }


def upload(minio: Minio, key: str) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (800, 600), (200, 80, 20)).save(buffer, "JPEG")
    data = buffer.getvalue()
    return str(minio.put_object("uploads", key, io.BytesIO(data), len(data)).etag).strip('"')


def test_a_trace_id_sent_in_reaches_every_function_and_forms_one_span_tree(
    chain: dict[str, Any], receiver: Receiver
) -> None:
    trace_id, sent_span = uuid.uuid4().hex, os.urandom(8).hex()
    key = f"traced/{uuid.uuid4().hex[:6]}.jpg"
    etag = upload(chain["minio"], key)
    record = {"s3": {"bucket": {"name": "uploads"}, "object": {"key": key, "eTag": etag}}}

    sent = subprocess.run(
        [
            str(PLAYBOOK),
            "send",
            PUT,
            "--data",
            "-",
            "--subject",
            f"uploads/{key}",
            "-e",
            "bucket=uploads",
            "--traceparent",
            f"00-{trace_id}-{sent_span}-01",
        ],
        input=json.dumps(record),
        env={**os.environ, "PLAYBOOK_DEVPLANE_URL": chain["devplane"].url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert sent.returncode == 0, sent.stderr
    assert f"trace {trace_id}" in sent.stdout

    [echoed] = wait_until(
        lambda: invocations(chain["echo"], PROCESSED), "echo's invocation", every=0.2
    )
    [processed] = invocations(chain["processor"], PUT)
    assert (processed["outcome"], processed["trace_id"]) == ("ok", trace_id)
    assert (echoed["outcome"], echoed["trace_id"]) == ("ok", trace_id)
    events = httpx.get(f"{chain['devplane'].url}/events", params={"limit": 100}).json()["events"]
    assert {e["type"] for e in events if e["trace_id"] == trace_id} == {PUT, PROCESSED, ECHOED}

    def both() -> list[ReceivedSpan] | None:
        spans = receiver.of_trace(trace_id)
        return spans if len(spans) >= 2 else None

    spans = {
        span.service: span
        for span in wait_until(both, "both spans of the trace", within=30, every=0.2)
    }
    assert set(spans) == {"image-processor", "echo"}
    first, second = spans["image-processor"], spans["echo"]
    assert (first.name, first.kind, first.parent_span_id) == (PUT, CONSUMER, sent_span)
    assert first.attributes["cloudevents.event_type"] == PUT
    assert first.attributes["cloudevents.event_source"] == "/playbook-cli"
    assert first.attributes["cloudevents.event_id"] == processed["event_id"]
    assert first.attributes["cloudevents.event_subject"] == f"uploads/{key}"
    # The reply carried image-processor's span: echo's span is its child.
    assert (second.name, second.parent_span_id) == (PROCESSED, first.span_id)
    assert second.attributes["cloudevents.event_id"] == echoed["event_id"]
    assert second.attributes["fnkit.outcome"] == "ok"


def test_a_failed_invocation_is_an_error_span_in_the_same_trace(
    chain: dict[str, Any], receiver: Receiver
) -> None:
    trace_id = uuid.uuid4().hex
    headers = {
        "ce-specversion": "1.0",
        "ce-id": f"bad-{trace_id[:6]}",
        "ce-source": "/test",
        "ce-type": PUT,
        "ce-traceparent": f"00-{trace_id}-{os.urandom(8).hex()}-01",
        "content-type": "application/json",
    }
    response = httpx.post(chain["processor"].url, headers=headers, content=b'{"s3": {}}')
    assert response.status_code == 422

    [span] = wait_until(
        lambda: receiver.of_trace(trace_id), "the span of the trace", within=30, every=0.2
    )
    assert span.attributes["fnkit.outcome"] == "rejected"
    assert span.attributes["http.response.status_code"] == 422
    [line] = [line for line in invocations(chain["processor"], PUT) if line["trace_id"] == trace_id]
    assert line["outcome"] == "rejected"


def test_a_rest_requests_traceparent_continues_into_the_events_it_emits(
    chain: dict[str, Any],
) -> None:
    trace_id = uuid.uuid4().hex
    response = httpx.post(
        f"{chain['emitter'].url}/things",
        headers={"traceparent": f"00-{trace_id}-{os.urandom(8).hex()}-01"},
    )
    assert response.status_code == 202
    event_id = response.json()["event_id"]

    events = httpx.get(
        f"{chain['devplane'].url}/events", params={"type": THING_CREATED, "id": event_id}
    ).json()["events"]
    assert [e["trace_id"] for e in events] == [trace_id]


NO_TRACING = textwrap.dedent("""
    import asyncio, sys
    from fnkit.echo import app

    async def main():
        lifespan = asyncio.Queue()
        await lifespan.put({"type": "lifespan.startup"})
        sent = []
        async def receive_lifespan():
            return await lifespan.get()
        async def record(message):
            sent.append(message)
        task = asyncio.create_task(app({"type": "lifespan"}, receive_lifespan, record))
        while not sent:
            await asyncio.sleep(0.01)
        body = b'{"n": 1}'
        headers = [(b"ce-specversion", b"1.0"), (b"ce-id", b"1"), (b"ce-source", b"/t"),
                   (b"ce-type", b"t.v1"), (b"content-type", b"application/json"),
                   (b"ce-traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]
        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}
        answer = []
        async def send(message):
            answer.append(message)
        while app._setup_done.is_set() is False:
            await asyncio.sleep(0.01)
        await app({"type": "http", "method": "POST", "path": "/", "headers": headers},
                  receive, send)
        await lifespan.put({"type": "lifespan.shutdown"})
        await task
        loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
        print(answer[0]["status"], loaded)

    asyncio.run(main())
""")


def test_without_an_endpoint_opentelemetry_is_never_imported() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, "-c", NO_TRACING],
        env={**env, "ENVIRONMENT": "dev"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[-2] == "200 []"
