"""The Workflow an order gets: its name derives from the order, so it is created once.

The Kubernetes API (and devplane) refuse a second object of the same name with 409
AlreadyExists: a redelivered or duplicated order.placed finds its Workflow already there and
starts nothing new. That is this function's whole idempotency, without a database.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any, Final

_LABEL_SAFE: Final = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def workflow_name(template: str, order_id: str) -> str:
    """`<template>-<order id>`; an id that is no DNS label is replaced by its digest."""
    suffix = (
        order_id
        if _LABEL_SAFE.match(order_id)
        else hashlib.sha256(order_id.encode()).hexdigest()[:40]
    )
    return f"{template}-{suffix}"


def workflow_manifest(
    order: Mapping[str, Any],
    *,
    template: str,
    namespace: str,
    service_account: str | None,
) -> dict[str, Any]:
    """The Workflow for `order` (order.placed's data): the template, with the order as
    parameters."""
    order_id = str(order["order_id"])
    name = workflow_name(template, order_id)
    spec: dict[str, Any] = {
        "workflowTemplateRef": {"name": template},
        "arguments": {
            "parameters": [
                {"name": "order-id", "value": order_id},
                {"name": "order", "value": json.dumps(dict(order), separators=(",", ":"))},
            ]
        },
    }
    if service_account:
        spec["serviceAccountName"] = service_account
    labels = {"app.kubernetes.io/part-of": "knative-playbook"}
    if _LABEL_SAFE.match(order_id):
        labels["knative-playbook.io/order-id"] = order_id
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": spec,
    }
