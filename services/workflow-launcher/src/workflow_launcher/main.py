"""workflow-launcher: the app, as `fnkit-serve workflow_launcher.main:app` serves it.

On `io.knative-playbook.order.placed.v1` it submits the order saga's Workflow, named after the
order: the first delivery creates it, every later one (a redelivery, a duplicate) finds it
there (409) and succeeds without starting anything. Answers 204; 503 while the Workflow API is
unavailable (the broker retries); 400 for an event without an order id.
"""

from __future__ import annotations

import logging
from typing import Final

from fnkit import BadEvent, CloudEvent, Context, Function, event_data

from workflow_launcher.config import Settings
from workflow_launcher.manifest import workflow_manifest
from workflow_launcher.submit import Backend, Devplane, Kubernetes

log = logging.getLogger("workflow_launcher")

ORDER_PLACED: Final = "io.knative-playbook.order.placed.v1"


def backend_for(settings: Settings) -> Backend:
    """The Workflow API this process submits to (see Settings.workflow_backend)."""
    choice = settings.workflow_backend
    if choice == "auto":
        mounted = (settings.service_account_dir / "token").exists()
        choice = "kubernetes" if mounted else "devplane"
    if choice == "kubernetes":
        return Kubernetes(
            settings.kubernetes_api_url,
            settings.service_account_dir,
            settings.workflow_namespace,
            settings.submit_timeout_seconds,
        )
    url = settings.devplane_url or settings.k_sink
    if not url:
        raise RuntimeError("WORKFLOW_BACKEND=devplane needs DEVPLANE_URL (or K_SINK)")
    return Devplane(url, settings.submit_timeout_seconds)


def create_app(settings: Settings | None = None) -> Function[Settings]:
    fn = Function(
        "workflow-launcher",
        settings_class=Settings,
        settings=settings,
        description="order.placed -> the order saga's Argo Workflow, once per order.",
    )
    backends: dict[str, Backend] = {}

    @fn.on_startup
    async def choose_backend(ctx: Context[Settings]) -> None:
        backends["current"] = backend = backend_for(ctx.settings)
        log.info("submitting workflows", extra={"backend": backend.name})

    @fn.on_shutdown
    async def close_backend(ctx: Context[Settings]) -> None:
        backend = backends.pop("current", None)
        if backend is not None:
            await backend.aclose()

    @fn.on(ORDER_PLACED)
    async def launch(event: CloudEvent, ctx: Context[Settings]) -> None:
        order = event_data(event)
        if not isinstance(order, dict) or not isinstance(order.get("order_id"), str):
            raise BadEvent("order.placed data must be an object with an order_id string")
        manifest = workflow_manifest(
            order,
            template=ctx.settings.workflow_template,
            # The Kubernetes backend falls back to the pod's own namespace.
            namespace=ctx.settings.workflow_namespace or "default",
            service_account=ctx.settings.workflow_service_account,
        )
        outcome = await backends["current"].submit(manifest)
        log.info(
            "workflow submitted" if outcome == "created" else "workflow already exists",
            extra={"workflow": manifest["metadata"]["name"], "order_id": order["order_id"]},
        )
        return None

    return fn


app = create_app()
