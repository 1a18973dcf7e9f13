"""workflow-launcher settings: fnkit's, plus where Workflows go and how they are named."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from fnkit import FunctionSettings
from pydantic import Field

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class Settings(FunctionSettings):
    """Environment variables have the same names, upper-cased (WORKFLOW_BACKEND, ...)."""

    workflow_backend: Literal["auto", "kubernetes", "devplane"] = Field(
        default="auto",
        description="kubernetes: create Workflows through the Kubernetes API (Argo runs them); "
        "devplane: hand them to devplane's workflow runner; auto: kubernetes when a service "
        "account token is mounted, devplane otherwise.",
    )
    workflow_template: str = Field(
        default="order-saga", description="The WorkflowTemplate every order's Workflow runs."
    )
    workflow_namespace: str | None = Field(
        default=None,
        description="Namespace of the Workflows (the chart sets it); else the pod's own.",
    )
    workflow_service_account: str | None = Field(
        default=None,
        description="ServiceAccount the Workflow runs as (the chart's workflow account).",
    )
    kubernetes_api_url: str = Field(
        default="https://kubernetes.default.svc", description="The Kubernetes API server."
    )
    service_account_dir: Path = Field(
        default=SERVICE_ACCOUNT_DIR,
        description="Where the pod's token, CA certificate and namespace are mounted.",
    )
    devplane_url: str | None = Field(
        default=None,
        description="devplane's URL (its /workflows API); K_SINK when unset, since devplane's "
        "broker and workflow runner are one server.",
    )
    submit_timeout_seconds: float = Field(default=10.0, gt=0)
