"""devplane's reading of Argo WorkflowTemplates: what it runs, and loud refusals of the rest."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from devplane.workflow_expr import Expression, ExpressionError, placeholders, substitute
from devplane.workflow_spec import (
    WorkflowError,
    go_duration,
    load_templates,
    parse_submission,
    parse_template,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

BASE: dict[str, Any] = yaml.safe_load(
    """
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
          - name: first
            template: call
            arguments: {parameters: [{name: path, value: "a/{{workflow.parameters.who}}"}]}
          - name: second
            depends: first.Failed
            template: call
            arguments: {parameters: [{name: path, value: "b"}]}
    - name: call
      inputs: {parameters: [{name: path}]}
      retryStrategy:
        limit: "2"
        backoff: {duration: "1s", factor: "2", maxDuration: "1m"}
        expression: "lastRetry.message matches 'code: 5'"
      http:
        url: "http://svc/{{inputs.parameters.path}}"
        method: POST
    - name: done
      http: {url: "http://svc/done/{{workflow.status}}"}
"""
)


def changed(path: list[Any], value: Any) -> dict[str, Any]:
    document = copy.deepcopy(BASE)
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return document


def test_the_repository_templates_load() -> None:
    templates = load_templates(ROOT / "workflows")

    saga = templates["order-saga"]
    assert saga.entrypoint == "saga"
    assert saga.on_exit == "record-outcome"
    assert set(saga.leaves) == {"notify-customer", "create-invoice", "release-inventory"}
    assert saga.templates["step"].retry is not None


def test_the_demo_template_reads_as_written() -> None:
    template = parse_template(BASE)

    call = template.templates["call"]
    assert call.retry is not None and call.retry.backoff is not None
    assert (call.retry.limit, call.retry.policy) == (2, "Always")  # Argo: an expression -> Always
    assert (call.retry.backoff.duration, call.retry.backoff.factor) == (1.0, 2)
    assert call.retry.backoff.max_duration == 60.0
    assert template.leaves == ("second",)


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        (["spec", "parallelism"], 2, "spec.parallelism"),
        (["spec", "templates", 1, "container"], {"image": "x"}, "templates[1]"),
        (["spec", "templates", 1, "http", "successCondition"], "true", "http.successCondition"),
        (
            ["spec", "templates", 1, "retryStrategy", "retryPolicy"],
            "OnTransientError",
            "retryPolicy",
        ),
        (["spec", "templates", 0, "dag", "tasks", 1, "when"], "1 == 1", "tasks[1].when"),
        (["spec", "templates", 0, "dag", "tasks", 1, "dependencies"], ["first"], "dependencies"),
        (["spec", "templates", 0, "dag", "tasks", 1, "depends"], "nope.Failed", "'nope'"),
        (["spec", "templates", 0, "dag", "tasks", 1, "depends"], "first.Broken", "'Broken'"),
        (["spec", "templates", 0, "dag", "tasks", 1, "depends"], "first and second", "'and'"),
        (
            ["spec", "templates", 1, "retryStrategy", "expression"],
            "asInt(lastRetry.exitCode) > 1",
            "'>'",
        ),
        (["spec", "templates", 1, "retryStrategy", "expression"], "retries == '1'", "'retries'"),
        (["spec", "templates", 1, "http", "url"], "http://svc/{{=sprig.trim('a')}}", "{{="),
        (["spec", "templates", 1, "http", "url"], "http://svc/{{inputs.parameters.nope}}", "nope"),
        (
            ["spec", "templates", 2, "http", "url"],
            "http://svc/{{tasks.first.outputs.result}}",
            "tasks.first",
        ),
        (["spec", "onExit"], "main", "spec.onExit"),
        (["spec", "entrypoint"], "call", "spec.entrypoint"),
    ],
)
def test_unsupported_or_unresolvable_fields_are_refused_by_name(
    path: list[Any], value: Any, named: str
) -> None:
    with pytest.raises(WorkflowError) as caught:
        parse_template(changed(path, value))

    assert named in str(caught.value)


def test_a_task_may_use_only_results_of_the_tasks_it_depends_on() -> None:
    document = changed(
        ["spec", "templates", 0, "dag", "tasks", 0, "arguments", "parameters", 0, "value"],
        "{{tasks.second.outputs.result}}",
    )

    with pytest.raises(WorkflowError, match="cannot resolve"):
        parse_template(document)


def test_a_cycle_is_refused() -> None:
    document = changed(["spec", "templates", 0, "dag", "tasks", 0, "depends"], "second")

    with pytest.raises(WorkflowError, match="depend on each other"):
        parse_template(document)


@pytest.mark.parametrize(
    ("expression", "phases", "expected"),
    [
        ("a", {"a": "Succeeded"}, True),
        ("a", {"a": "Failed"}, False),
        ("a.Failed || a.Errored", {"a": "Error"}, True),
        ("!a.Succeeded && b.Omitted", {"a": "Failed", "b": "Omitted"}, True),
        (
            "(a.Failed || b.Failed) && !c.Succeeded",
            {"a": "Succeeded", "b": "Failed", "c": "Omitted"},
            True,
        ),
        ("reserve-inventory.Failed", {"reserve-inventory": "Failed"}, True),
    ],
)
def test_depends_expressions(expression: str, phases: dict[str, str], expected: bool) -> None:
    results = {
        "Succeeded": "Succeeded",
        "Failed": "Failed",
        "Errored": "Error",
        "Omitted": "Omitted",
    }

    def resolve(name: str) -> bool:
        task, _, result = name.partition(".")
        return phases[task] == results[result] if result else phases[task] == "Succeeded"

    assert Expression(expression).evaluate(resolve) is expected


@pytest.mark.parametrize(
    ("message", "retried"),
    [
        ("received non-2xx response code: 503", True),
        ("received non-2xx response code: 409", True),
        ("received non-2xx response code: 422", False),
        ("received non-2xx response code: 400", False),
        ('Post "http://x/": dial tcp: connection refused', True),
    ],
)
def test_the_saga_retry_expression(message: str, retried: bool) -> None:
    saga = load_templates(ROOT / "workflows")["order-saga"]
    retry = saga.templates["step"].retry
    assert retry is not None and retry.expression is not None

    values = {"lastRetry.message": message}

    assert retry.expression.evaluate(values.__getitem__) is retried


def test_placeholders_are_replaced_once() -> None:
    text = "{{ a }}/{{b}}"

    assert placeholders(text) == ["a", "b"]
    assert substitute(text, {"a": "{{b}}", "b": "2"}) == "{{b}}/2"
    with pytest.raises(ExpressionError):
        placeholders("{{=1}}")


@pytest.mark.parametrize(
    ("text", "seconds"), [("10", 10), ("1s", 1), ("500ms", 0.5), ("2m", 120), ("1h30m", 5400)]
)
def test_argo_durations(text: str, seconds: float) -> None:
    assert go_duration(text, "x") == seconds


def test_a_duration_in_iso_8601_is_not_argos() -> None:
    with pytest.raises(WorkflowError, match="not a duration"):
        go_duration("PT1S", "spec.backoff.duration")


def test_a_submission_needs_every_parameter_and_no_others() -> None:
    templates = {"demo": parse_template(BASE)}
    workflow: dict[str, Any] = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "demo-1", "labels": {"a": "b"}},
        "spec": {
            "workflowTemplateRef": {"name": "demo"},
            "arguments": {"parameters": [{"name": "who", "value": "me"}]},
        },
    }

    submission = parse_submission(workflow, templates)
    assert (submission.name, submission.arguments, submission.namespace) == (
        "demo-1",
        {"who": "me"},
        "default",
    )

    missing = copy.deepcopy(workflow)
    missing["spec"]["arguments"]["parameters"] = []
    with pytest.raises(WorkflowError, match="'who' is required"):
        parse_submission(missing, templates)
    extra = copy.deepcopy(workflow)
    extra["spec"]["arguments"]["parameters"].append({"name": "x", "value": "1"})
    with pytest.raises(WorkflowError, match="'x' is not a parameter"):
        parse_submission(extra, templates)
    inline = copy.deepcopy(workflow)
    inline["spec"]["templates"] = []
    with pytest.raises(WorkflowError, match=r"spec\.templates"):
        parse_submission(inline, templates)
    bad_name = copy.deepcopy(workflow)
    bad_name["metadata"]["name"] = "Not_A_Name"
    with pytest.raises(WorkflowError, match="not a valid Kubernetes name"):
        parse_submission(bad_name, templates)
