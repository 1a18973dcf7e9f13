"""devplane's workflow API: what workflow-launcher submits to locally, and what people read."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Response
from fnkit import Rejected
from fnkit.rest import error_responses

from devplane.workflow_spec import WorkflowError
from devplane.workflows import WorkflowRunner


class UnsupportedWorkflow(Rejected):
    code = "unsupported_workflow"


def router(runner: WorkflowRunner) -> APIRouter:
    api = APIRouter(tags=["workflows"])

    @api.post(
        "/workflows",
        status_code=201,
        summary="Submit an Argo Workflow (by workflowTemplateRef); 409 if its name exists.",
        responses=error_responses(409, 422),
    )
    async def submit(
        response: Response,
        workflow: dict[str, Any] = Body(  # noqa: B008 - FastAPI's way to take any JSON object
            examples=[
                {
                    "apiVersion": "argoproj.io/v1alpha1",
                    "kind": "Workflow",
                    "metadata": {"name": "order-saga-6650f1c2a4b5c6d7e8f90123"},
                    "spec": {
                        "workflowTemplateRef": {"name": "order-saga"},
                        "arguments": {"parameters": [{"name": "order-id", "value": "..."}]},
                    },
                }
            ]
        ),
    ) -> dict[str, Any]:
        try:
            run = runner.submit(workflow)
        except WorkflowError as exc:
            raise UnsupportedWorkflow(str(exc)) from None
        response.headers["Location"] = f"/workflows/{run.name}"
        return run.view()

    @api.get("/workflows", summary="Workflows, newest first, with their phase and progress.")
    async def list_workflows() -> dict[str, Any]:
        return {"workflows": [run.summary() for run in runner.list()]}

    @api.get(
        "/workflows/{name}",
        summary="One workflow: each task with its attempts, messages and result.",
        responses=error_responses(404),
    )
    async def show_workflow(name: str) -> dict[str, Any]:
        return runner.get(name).view()

    @api.get("/workflow-templates", summary="The WorkflowTemplates devplane loaded.")
    async def list_templates() -> dict[str, Any]:
        return {
            "templates": [
                {
                    "name": t.name,
                    "source": t.source,
                    "entrypoint": t.entrypoint,
                    "on_exit": t.on_exit,
                    "parameters": [p.name for p in t.parameters],
                    "tasks": [task.name for task in t.dag().tasks],
                }
                for t in runner.templates.values()
            ]
        }

    return api
