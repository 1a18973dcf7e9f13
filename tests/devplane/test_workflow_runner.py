"""devplane's workflow runner against a real HTTP server that answers as scripted: DAG order,
outputs, retries with backoff, compensation through depends, the exit handler."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from devplane.servers import free_port
from devplane.workflow_spec import parse_template
from devplane.workflows import AlreadyExists, Run, WorkflowRunner

from tests.support.sinks import AsgiServer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.unit

TEMPLATE = """
apiVersion: argoproj.io/v1alpha1
kind: WorkflowTemplate
metadata: {name: demo}
spec:
  entrypoint: main
  onExit: done
  arguments:
    parameters: [{name: who}]
  templates:
    - name: main
      dag:
        tasks:
          - name: start
            template: call
            arguments:
              parameters:
                - {name: step, value: start}
                - {name: body, value: "{{workflow.parameters.who}}"}
          - name: left
            depends: start
            template: call
            arguments:
              parameters:
                - {name: step, value: left}
                - {name: body, value: "{{tasks.start.outputs.result}}"}
          - name: right
            depends: start
            template: call
            arguments:
              parameters:
                - {name: step, value: right}
                - {name: body, value: "{{tasks.start.outputs.result}}"}
          - name: undo
            depends: left.Failed || right.Failed
            template: call
            arguments:
              parameters:
                - {name: step, value: undo}
                - {name: body, value: "x"}
    - name: call
      inputs:
        parameters: [{name: step}, {name: body}]
      retryStrategy:
        limit: "3"
        backoff: {duration: "200ms", factor: "2", maxDuration: "1m"}
        expression: >-
          !(lastRetry.message matches 'non-2xx response code: 4')
          || lastRetry.message matches 'non-2xx response code: (408|409|429)'
      http:
        url: "http://svc.{{workflow.namespace}}.svc.cluster.local/{{inputs.parameters.step}}"
        method: POST
        body: "{{inputs.parameters.body}}"
        timeoutSeconds: 5
    - name: done
      http:
        url: "http://svc/done"
        method: POST
        body: '{"workflow": "{{workflow.name}}", "status": "{{workflow.status}}"}'
"""


@dataclass
class Call:
    path: str
    body: str
    at: float


class Service(AsgiServer):
    """A real HTTP server: each path answers the statuses scripted for it, then 200."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[Call] = []
        self.scripts: dict[str, list[int]] = {}

    async def answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        path = path.strip("/")
        self.calls.append(Call(path, body.decode(), time.monotonic()))
        script = self.scripts.get(path) or []
        status = script.pop(0) if script else 200
        return status, f"{path}({body.decode()})".encode()

    def paths(self) -> list[str]:
        return [call.path for call in self.calls]


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    async with Service() as server:
        yield server


@pytest.fixture
async def runner(
    service: Service, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[WorkflowRunner]:
    caplog.set_level(logging.INFO, "devplane.workflows")  # every log line is made, as in devplane
    template = parse_template(yaml.safe_load(TEMPLATE))
    runner = WorkflowRunner({"demo": template}, {"svc": service.url}, history=10)
    await runner.start()
    yield runner
    await runner.stop()


def workflow(name: str, who: str = "ada") -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {
            "workflowTemplateRef": {"name": "demo"},
            "arguments": {"parameters": [{"name": "who", "value": who}]},
        },
    }


async def finished(runner: WorkflowRunner, name: str) -> Run:
    async def done() -> Run | None:
        run = runner.get(name)
        return run if run.finished_at is not None else None

    return await wait_for(done, f"workflow {name} to finish")


def phases(run: Run) -> dict[str, str]:
    return {name: node.phase for name, node in run.nodes.items()}


async def test_a_dag_runs_in_order_and_passes_outputs_on(
    runner: WorkflowRunner, service: Service
) -> None:
    runner.submit(workflow("w1"))
    run = await finished(runner, "w1")

    assert run.phase == "Succeeded"
    assert phases(run) == {
        "start": "Succeeded",
        "left": "Succeeded",
        "right": "Succeeded",
        "undo": "Omitted",
    }
    assert service.paths()[0] == "start"
    assert sorted(service.paths()[1:3]) == ["left", "right"]
    # left got start's response body: the outputs.result of an HTTP template.
    assert next(c.body for c in service.calls if c.path == "left") == "start(ada)"
    assert json.loads(service.calls[-1].body) == {"workflow": "w1", "status": "Succeeded"}
    assert run.exit is not None and run.exit.phase == "Succeeded"


async def test_transient_failures_are_retried_with_exponential_backoff(
    runner: WorkflowRunner, service: Service
) -> None:
    service.scripts["start"] = [503, 503]

    runner.submit(workflow("w2"))
    run = await finished(runner, "w2")

    assert run.phase == "Succeeded"
    starts = [c.at for c in service.calls if c.path == "start"]
    assert len(starts) == 3
    assert starts[1] - starts[0] >= 0.2  # duration
    assert starts[2] - starts[1] >= 0.4  # duration * factor
    attempts = run.nodes["start"].attempts
    assert [a.status_code for a in attempts] == [503, 503, 200]
    assert attempts[0].message == "received non-2xx response code: 503"


async def test_a_rejection_is_not_retried_and_its_compensation_runs(
    runner: WorkflowRunner, service: Service
) -> None:
    service.scripts["left"] = [422]

    runner.submit(workflow("w3"))
    run = await finished(runner, "w3")

    assert service.paths().count("left") == 1
    assert phases(run)["left"] == "Failed"
    assert run.nodes["left"].message == "retryStrategy.expression evaluated to false"
    assert phases(run)["undo"] == "Succeeded"
    # Argo's rule: the only leaf, undo, handled the failure and succeeded, so the DAG did.
    assert run.phase == "Succeeded"
    assert json.loads(service.calls[-1].body)["status"] == "Succeeded"


async def test_retries_end_at_the_limit(runner: WorkflowRunner, service: Service) -> None:
    service.scripts["right"] = [503] * 10

    runner.submit(workflow("w4"))
    run = await finished(runner, "w4")

    assert service.paths().count("right") == 4  # limit 3: four attempts in all
    assert run.nodes["right"].message == "No more retries left"
    assert phases(run)["undo"] == "Succeeded"


async def test_a_service_that_does_not_answer_is_retried(
    runner: WorkflowRunner, service: Service
) -> None:
    runner.function_urls = {"svc": f"http://127.0.0.1:{free_port()}"}  # nobody listens there

    runner.submit(workflow("w5"))
    run = await finished(runner, "w5")

    start = run.nodes["start"]
    assert len(start.attempts) == 4
    assert start.attempts[0].message.startswith('Post "http://svc.shop.svc.cluster.local/start"')
    assert phases(run) == {
        "start": "Failed",
        "left": "Omitted",
        "right": "Omitted",
        "undo": "Omitted",
    }
    assert run.phase == "Failed"  # omitted leaves on a failed branch
    assert run.exit is not None and run.exit.phase == "Failed"


async def test_a_name_is_taken_while_its_workflow_is_kept(runner: WorkflowRunner) -> None:
    runner.submit(workflow("w6"))

    with pytest.raises(AlreadyExists):
        runner.submit(workflow("w6", who="someone else"))
    await finished(runner, "w6")
    with pytest.raises(AlreadyExists):
        runner.submit(workflow("w6"))


async def test_a_failing_exit_handler_fails_a_workflow_that_succeeded(
    runner: WorkflowRunner, service: Service
) -> None:
    service.scripts["done"] = [500]

    runner.submit(workflow("w7"))
    run = await finished(runner, "w7")

    assert phases(run)["undo"] == "Omitted"
    assert run.phase == "Failed"
    assert run.message == "received non-2xx response code: 500"


def test_cluster_urls_go_to_the_functions_local_address() -> None:
    runner = WorkflowRunner({}, {"order-steps": "http://127.0.0.1:9999"}, history=1)

    local = runner.local_url
    assert local("http://order-steps.shop.svc.cluster.local/steps/x?a=1") == (
        "http://127.0.0.1:9999/steps/x?a=1"
    )
    assert local("http://order-steps.shop.svc/outcomes") == "http://127.0.0.1:9999/outcomes"
    assert local("http://order-steps/outcomes") == "http://127.0.0.1:9999/outcomes"
    assert local("https://api.example.com/x") == "https://api.example.com/x"
    assert local("http://elsewhere.shop.svc.cluster.local/") == (
        "http://elsewhere.shop.svc.cluster.local/"
    )
