"""workflow-launcher: one Workflow per order, through a stand-in Kubernetes API server that
answers as the real one does (201 Created, then 409 AlreadyExists for the same name)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fnkit.events import encode_binary, new_event
from workflow_launcher.config import Settings
from workflow_launcher.main import create_app

from tests.support.apps import serve_in_process
from tests.support.sinks import AsgiServer

pytestmark = pytest.mark.integration

PLACED = "io.knative-playbook.order.placed.v1"
ORDER: dict[str, Any] = {
    "order_id": "6650f1c2a4b5c6d7e8f90123",
    "customer": {"name": "Ada", "email": "ada@example.com"},
    "lines": [{"sku": "SHOE", "quantity": 1}],
    "payment_token": "tok_approve",
    "placed_at": "2026-01-01T00:00:00Z",
}


class KubernetesApi(AsgiServer):
    """Workflows by name, as the API server keeps them; every request recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        self.workflows: dict[str, dict[str, Any]] = {}
        self.refuse_with: int | None = None

    async def answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        manifest = json.loads(body)
        self.requests.append((path, headers, manifest))
        name = manifest["metadata"]["name"]
        answer: dict[str, Any]
        if self.refuse_with is not None:
            status, answer = self.refuse_with, {"kind": "Status", "reason": "Forbidden"}
        elif name in self.workflows:
            status, answer = 409, {"kind": "Status", "reason": "AlreadyExists", "code": 409}
        else:
            self.workflows[name] = manifest
            status, answer = 201, manifest
        return status, json.dumps(answer).encode()


@pytest.fixture
async def kube() -> AsyncIterator[KubernetesApi]:
    async with KubernetesApi() as server:
        yield server


@pytest.fixture
def account(tmp_path: Path) -> Path:
    """A mounted ServiceAccount: its token and namespace."""
    (tmp_path / "token").write_text("the-token\n")
    (tmp_path / "namespace").write_text("shop\n")
    return tmp_path


@pytest.fixture
async def launcher(kube: KubernetesApi, account: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        environment="dev",
        workflow_backend="kubernetes",
        kubernetes_api_url=kube.url,
        service_account_dir=account,
        workflow_service_account="kp-workflow",
    )
    async with serve_in_process(create_app(settings), base_url="http://launcher") as client:
        yield client


async def deliver(client: httpx.AsyncClient, data: Any, event_id: str | None = None) -> int:
    event = new_event(PLACED, "/knative-playbook/orders-api", data, id=event_id or uuid.uuid4().hex)
    headers, body = encode_binary(event)
    response = await client.post(
        "/", headers=[(k.decode(), v.decode()) for k, v in headers], content=body
    )
    return response.status_code


async def test_an_order_gets_one_workflow_however_often_it_is_placed(
    launcher: httpx.AsyncClient, kube: KubernetesApi
) -> None:
    first = await deliver(launcher, ORDER, "e-1")
    redelivered = await deliver(launcher, ORDER, "e-1")
    duplicate = await deliver(launcher, ORDER, "e-2")  # the same order, another event id

    assert (first, redelivered, duplicate) == (204, 204, 204)
    assert list(kube.workflows) == [f"order-saga-{ORDER['order_id']}"]
    path, headers, manifest = kube.requests[0]
    assert path == "/apis/argoproj.io/v1alpha1/namespaces/shop/workflows"
    assert headers["authorization"] == "Bearer the-token"
    assert manifest["metadata"]["namespace"] == "shop"
    assert manifest["spec"]["workflowTemplateRef"] == {"name": "order-saga"}


async def test_a_refusal_of_the_api_is_a_503_for_the_broker_to_retry(
    launcher: httpx.AsyncClient, kube: KubernetesApi
) -> None:
    kube.refuse_with = 403

    assert await deliver(launcher, ORDER) == 503
    assert kube.workflows == {}


async def test_an_event_without_an_order_id_is_a_400(launcher: httpx.AsyncClient) -> None:
    assert await deliver(launcher, {"lines": []}) == 400
