"""The broker's ingress in-process: what it accepts, what it refuses, and why."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import yaml
from devplane.broker import error_data
from devplane.main import DevplaneApp
from devplane.settings import DevplaneSettings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CAPACITY = 3


@pytest.fixture
async def devplane(tmp_path: Path) -> AsyncIterator[tuple[DevplaneApp, httpx.AsyncClient]]:
    extra = tmp_path / "values.yaml"
    extra.write_text(
        yaml.safe_dump(
            {
                "cronJobs": {"cleanup": {"enabled": False}},
                "functions": {
                    "sub": {
                        "url": "http://127.0.0.1:9",
                        "triggers": [
                            {"name": "all-x", "filter": {"attributes": {"type": "x.v1"}}},
                        ],
                    }
                },
            }
        )
    )
    settings = DevplaneSettings(
        environment="dev",
        devplane_chart_values=ROOT / "charts/knative-playbook/values.yaml",
        devplane_extra_values=str(extra),
        devplane_queue_capacity=CAPACITY,
        devplane_drain_seconds=0,
        max_event_bytes=1000,
    )
    app = DevplaneApp(settings)
    app.plane.knobs.paused = True  # nothing is delivered: queues only fill
    api = app.function.api
    async with api.router.lifespan_context(api):
        await app.plane.ready.wait()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://devplane") as client:
            yield app, client


def binary(event_type: str = "x.v1", event_id: str = "1") -> dict[str, str]:
    return {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": "/t",
        "ce-type": event_type,
        "content-type": "application/json",
    }


async def test_binary_event_is_accepted_with_202_and_its_delivery_count(devplane) -> None:
    _, client = devplane
    response = await client.post("/", headers=binary(), content=b'{"a": 1}')
    assert response.status_code == 202
    assert response.json() == {"id": "1", "deliveries": 1}


async def test_structured_event_is_accepted(devplane) -> None:
    _, client = devplane
    envelope = {"specversion": "1.0", "id": "s1", "source": "/t", "type": "other.v1", "data": {}}
    response = await client.post(
        "/", headers={"content-type": "application/cloudevents+json"}, content=json.dumps(envelope)
    )
    assert response.status_code == 202
    assert response.json() == {"id": "s1", "deliveries": 0}


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/t"}, b"{}", 400),
        ({**binary(), "content-type": "application/json"}, b"{not json", 400),
        ({"content-type": "application/cloudevents-batch+json"}, b"[]", 415),
        ({"content-type": "application/json"}, b"{}", 415),
        (binary(), b'"' + b"x" * 2000 + b'"', 413),
    ],
)
async def test_what_is_not_one_valid_cloudevent_gets_a_clear_4xx(
    devplane, headers: dict[str, str], body: bytes, status: int
) -> None:
    _, client = devplane
    response = await client.post("/", headers=headers, content=body)
    assert response.status_code == status
    assert response.json()["error"]["message"]


async def test_a_full_queue_refuses_the_whole_event_with_503(devplane) -> None:
    app, client = devplane
    for n in range(CAPACITY):
        assert (
            await client.post("/", headers=binary(event_id=str(n)), content=b"{}")
        ).status_code == 202

    refused = await client.post("/", headers=binary(event_id="late"), content=b"{}")
    unrelated = await client.post("/", headers=binary("other.v1", "other"), content=b"{}")

    assert refused.status_code == 503
    assert "sub" in refused.json()["error"]["message"]
    assert unrelated.status_code == 202  # only the full subscriber pushes back
    assert app.plane.broker.queues()["sub"] == CAPACITY
    assert [r.id for r in app.plane.events.query(type="x.v1")] == ["2", "1", "0"]


async def test_knobs_can_be_read_and_changed(devplane) -> None:
    _, client = devplane
    changed = await client.post("/knobs", json={"duplicate_ratio": 0.5, "paused": False})
    refused = await client.post("/knobs", json={"duplicate_ratio": 2})
    typo = await client.post("/knobs", json={"dupes": 1})

    assert changed.json() == {"duplicate_ratio": 0.5, "delay_seconds": 0.0, "paused": False}
    assert refused.status_code == 422
    assert typo.status_code == 422


async def test_the_routing_table_is_visible(devplane) -> None:
    _, client = devplane
    triggers = (await client.get("/triggers")).json()["triggers"]
    sub = next(t for t in triggers if t["subscriber"] == "sub")
    assert sub["url"] == "http://127.0.0.1:9"
    assert sub["filter"] == {"type": "x.v1"}
    assert sub["dead_letter_url"] == "http://127.0.0.1:8110"


def test_error_data_is_base64_of_the_body_cut_as_knative_cuts_it() -> None:
    assert base64.b64decode(error_data(b"boom")) == b"boom"
    long = bytes(range(256)) * 8
    data = error_data(long)
    assert len(data) == 1024
    assert base64.b64decode(data) == long[:768]  # 1024 base64 characters hold 768 bytes
