"""workflow-launcher's decisions: the Workflow's name and manifest, and where it goes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from workflow_launcher.config import Settings
from workflow_launcher.main import backend_for
from workflow_launcher.manifest import workflow_manifest, workflow_name
from workflow_launcher.submit import Devplane, Kubernetes

from tests.workflow_launcher.test_launcher import ORDER

pytestmark = pytest.mark.unit


def test_the_workflow_is_named_after_the_order() -> None:
    assert workflow_name("order-saga", ORDER["order_id"]) == f"order-saga-{ORDER['order_id']}"
    odd = workflow_name("order-saga", "Order/42")
    assert odd.startswith("order-saga-") and odd == workflow_name("order-saga", "Order/42")
    assert odd[len("order-saga-") :].isalnum()


def test_the_manifest_runs_the_template_with_the_order_as_parameters() -> None:
    manifest = workflow_manifest(
        ORDER, template="order-saga", namespace="shop", service_account="kp-workflow"
    )

    assert manifest["metadata"]["name"] == f"order-saga-{ORDER['order_id']}"
    assert manifest["metadata"]["labels"]["knative-playbook.io/order-id"] == ORDER["order_id"]
    assert manifest["spec"]["workflowTemplateRef"] == {"name": "order-saga"}
    assert manifest["spec"]["serviceAccountName"] == "kp-workflow"
    parameters = {p["name"]: p["value"] for p in manifest["spec"]["arguments"]["parameters"]}
    assert parameters["order-id"] == ORDER["order_id"]
    assert json.loads(parameters["order"]) == ORDER


def test_auto_means_kubernetes_only_where_a_token_is_mounted(tmp_path: Path) -> None:
    account = tmp_path / "account"
    account.mkdir()
    (account / "token").write_text("t")
    mounted = Settings(environment="dev", service_account_dir=account)
    laptop = Settings(
        environment="dev", service_account_dir=tmp_path / "nothing", k_sink="http://127.0.0.1:8100"
    )

    assert isinstance(backend_for(mounted), Kubernetes)
    local = backend_for(laptop)
    assert isinstance(local, Devplane) and local.url == "http://127.0.0.1:8100"
