"""Argo WorkflowTemplates and Workflows, read and checked against the subset devplane runs.

The subset is what the repository's templates use: a DAG entrypoint whose tasks have `depends`
expressions and parameter arguments; HTTP templates (url, method, headers, body,
timeoutSeconds) with input parameters, whose response body is `outputs.result`;
`retryStrategy` (limit, retryPolicy Always / OnFailure / OnError, backoff duration / factor /
maxDuration, expression); an `onExit` HTTP template; workflow parameters; `ttlStrategy.
secondsAfterCompletion`. `serviceAccountName` is accepted and has no effect here (RBAC is the
cluster's business). Every other field is refused with its path, so that a template never runs
locally with part of its meaning silently dropped; a Workflow is submitted by
`workflowTemplateRef`, with arguments.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import yaml

from devplane.workflow_expr import Expression, ExpressionError, placeholders

API_VERSION: Final = "argoproj.io/v1alpha1"
RESULTS: Final = frozenset({"Succeeded", "Failed", "Errored", "Skipped", "Omitted", "Daemoned"})
RETRY_NAMES: Final = frozenset(
    {"lastRetry.exitCode", "lastRetry.status", "lastRetry.duration", "lastRetry.message"}
)
RETRY_POLICIES: Final = frozenset({"Always", "OnFailure", "OnError"})
_GO_DURATION: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS: Final = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_NAME: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class WorkflowError(ValueError):
    """A template or Workflow devplane cannot run faithfully; the message names the field."""


def _fields(raw: Any, where: str, allowed: Iterable[str], required: Iterable[str] = ()) -> None:
    if not isinstance(raw, Mapping):
        raise WorkflowError(f"{where}: must be a mapping, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise WorkflowError(
            f"{where}.{unknown[0]}: not supported by devplane's workflow runner "
            f"(it runs {', '.join(sorted(allowed))} here)"
        )
    for key in required:
        if key not in raw:
            raise WorkflowError(f"{where}.{key}: required")


def _text(raw: Any, where: str) -> str:
    if not isinstance(raw, str) or not raw:
        raise WorkflowError(f"{where}: must be a non-empty string")
    return raw


def _int_or_string(raw: Any, where: str) -> int:
    """Argo's IntOrString: `4` or `"4"`."""
    if isinstance(raw, bool):
        raise WorkflowError(f"{where}: must be a whole number, got {raw!r}")
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise WorkflowError(f"{where}: must be a whole number, got {raw!r}") from None


def go_duration(raw: Any, where: str) -> float:
    """Seconds in an Argo duration: a whole number of seconds, or Go's `1m30s`, `500ms`."""
    text = str(raw).strip()
    if text.isdigit():
        return float(text)
    parts = _GO_DURATION.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise WorkflowError(f'{where}: {raw!r} is not a duration (e.g. "10", "1s", "2m")')
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


@dataclass(frozen=True, slots=True)
class Parameter:
    name: str
    default: str | None


@dataclass(frozen=True, slots=True)
class Backoff:
    duration: float
    factor: int | None
    max_duration: float | None


@dataclass(frozen=True, slots=True)
class RetryStrategy:
    limit: int | None
    policy: str
    backoff: Backoff | None
    expression: Expression | None


@dataclass(frozen=True, slots=True)
class HttpCall:
    url: str
    method: str
    headers: tuple[tuple[str, str], ...]
    body: str
    timeout: float


@dataclass(frozen=True, slots=True)
class Task:
    name: str
    template: str
    depends: Expression | None
    arguments: Mapping[str, str]

    @property
    def dependencies(self) -> list[str]:
        """The tasks its `depends` names (bare or with a result)."""
        if self.depends is None:
            return []
        return sorted({name.split(".")[0] for name in self.depends.names})


@dataclass(frozen=True, slots=True)
class Template:
    name: str
    inputs: tuple[Parameter, ...] = ()
    http: HttpCall | None = None
    tasks: tuple[Task, ...] = ()
    retry: RetryStrategy | None = None


@dataclass(frozen=True, slots=True)
class WorkflowTemplate:
    name: str
    entrypoint: str
    on_exit: str | None
    parameters: tuple[Parameter, ...]
    templates: Mapping[str, Template]
    ttl_after_completion: float | None
    source: str = ""
    leaves: tuple[str, ...] = field(default=())

    def dag(self) -> Template:
        return self.templates[self.entrypoint]


@dataclass(frozen=True, slots=True)
class Submission:
    """A Workflow as submitted: its name, the template it runs, its arguments."""

    name: str
    namespace: str
    template: str
    arguments: Mapping[str, str]
    labels: Mapping[str, str]


# -- WorkflowTemplate --------------------------------------------------------------------


def _parameters(raw: Any, where: str, *, values: bool) -> tuple[Parameter, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise WorkflowError(f"{where}: must be a list")
    found: list[Parameter] = []
    for index, item in enumerate(raw):
        here = f"{where}[{index}]"
        _fields(item, here, ("name", "value", "description"), ("name",))
        value = item.get("value")
        if value is not None and not isinstance(value, str | int | float | bool):
            raise WorkflowError(f"{here}.value: must be a string")
        if values and value is None:
            raise WorkflowError(f"{here}.value: required")
        name = _text(item["name"], f"{here}.name")
        if any(p.name == name for p in found):
            raise WorkflowError(f"{here}.name: {name!r} is declared twice")
        found.append(Parameter(name, None if value is None else str(value)))
    return tuple(found)


def _retry(raw: Any, where: str) -> RetryStrategy:
    _fields(raw, where, ("limit", "retryPolicy", "backoff", "expression"))
    limit = _int_or_string(raw["limit"], f"{where}.limit") if "limit" in raw else None
    expression = None
    if "expression" in raw:
        expression = _expression(raw["expression"], f"{where}.expression")
        unknown = [name for name in expression.names if name not in RETRY_NAMES]
        if unknown:
            raise WorkflowError(
                f"{where}.expression: {unknown[0]!r} is not supported (devplane provides "
                f"{', '.join(sorted(RETRY_NAMES))})"
            )
    # Argo's default: OnFailure, or Always when there is an expression.
    policy = raw.get("retryPolicy") or ("Always" if expression else "OnFailure")
    if policy not in RETRY_POLICIES:
        raise WorkflowError(
            f"{where}.retryPolicy: {policy!r} is not supported (devplane runs "
            f"{', '.join(sorted(RETRY_POLICIES))})"
        )
    backoff = None
    if "backoff" in raw:
        here = f"{where}.backoff"
        _fields(raw["backoff"], here, ("duration", "factor", "maxDuration"), ("duration",))
        spec = raw["backoff"]
        backoff = Backoff(
            go_duration(spec["duration"], f"{here}.duration"),
            _int_or_string(spec["factor"], f"{here}.factor") if "factor" in spec else None,
            go_duration(spec["maxDuration"], f"{here}.maxDuration")
            if "maxDuration" in spec
            else None,
        )
    return RetryStrategy(limit, policy, backoff, expression)


def _expression(raw: Any, where: str) -> Expression:
    try:
        return Expression(_text(raw, where))
    except ExpressionError as exc:
        raise WorkflowError(f"{where}: {exc}") from None


def _http(raw: Any, where: str) -> HttpCall:
    _fields(raw, where, ("url", "method", "headers", "body", "timeoutSeconds"), ("url",))
    headers: list[tuple[str, str]] = []
    for index, header in enumerate(raw.get("headers") or []):
        here = f"{where}.headers[{index}]"
        _fields(header, here, ("name", "value"), ("name", "value"))
        headers.append((_text(header["name"], f"{here}.name"), str(header["value"])))
    body = raw.get("body", "")
    if not isinstance(body, str):
        raise WorkflowError(f"{where}.body: must be a string")
    timeout = raw.get("timeoutSeconds", 30)  # Argo's default
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0:
        raise WorkflowError(f"{where}.timeoutSeconds: must be a whole number above 0")
    return HttpCall(
        _text(raw["url"], f"{where}.url"),
        str(raw.get("method", "GET")).upper(),
        tuple(headers),
        body,
        float(timeout),
    )


def _template(raw: Any, where: str) -> Template:
    _fields(raw, where, ("name", "inputs", "http", "dag", "retryStrategy"), ("name",))
    name = _text(raw["name"], f"{where}.name")
    if ("http" in raw) == ("dag" in raw):
        raise WorkflowError(
            f"{where}: needs exactly one of http or dag (devplane runs no other template type)"
        )
    inputs: tuple[Parameter, ...] = ()
    if "inputs" in raw:
        _fields(raw["inputs"], f"{where}.inputs", ("parameters",))
        inputs = _parameters(
            raw["inputs"].get("parameters"), f"{where}.inputs.parameters", values=False
        )
    retry = (
        _retry(raw["retryStrategy"], f"{where}.retryStrategy") if "retryStrategy" in raw else None
    )
    if "http" in raw:
        return Template(name, inputs, http=_http(raw["http"], f"{where}.http"), retry=retry)
    if retry is not None:
        raise WorkflowError(f"{where}.retryStrategy: devplane retries HTTP templates only")
    _fields(raw["dag"], f"{where}.dag", ("tasks",), ("tasks",))
    tasks: list[Task] = []
    for index, task in enumerate(raw["dag"]["tasks"] or []):
        here = f"{where}.dag.tasks[{index}]"
        _fields(task, here, ("name", "template", "depends", "arguments"), ("name", "template"))
        arguments: dict[str, str] = {}
        if "arguments" in task:
            _fields(task["arguments"], f"{here}.arguments", ("parameters",))
            for parameter in _parameters(
                task["arguments"].get("parameters"), f"{here}.arguments.parameters", values=True
            ):
                assert parameter.default is not None
                arguments[parameter.name] = parameter.default
        tasks.append(
            Task(
                _text(task["name"], f"{here}.name"),
                _text(task["template"], f"{here}.template"),
                _expression(task["depends"], f"{here}.depends") if "depends" in task else None,
                arguments,
            )
        )
    return Template(name, inputs, tasks=tuple(tasks))


def parse_template(document: Any, source: str = "") -> WorkflowTemplate:
    """A WorkflowTemplate, checked: every field supported, every reference resolvable."""
    where = source or "WorkflowTemplate"
    _fields(document, where, ("apiVersion", "kind", "metadata", "spec"), ("kind", "spec"))
    if document["kind"] != "WorkflowTemplate" or document.get("apiVersion") != API_VERSION:
        raise WorkflowError(f"{where}: expected kind WorkflowTemplate, apiVersion {API_VERSION}")
    meta = document.get("metadata") or {}
    _fields(meta, f"{where}.metadata", ("name", "namespace", "labels", "annotations"), ("name",))
    spec = document["spec"]
    _fields(
        spec,
        f"{where}.spec",
        ("entrypoint", "onExit", "arguments", "templates", "ttlStrategy", "serviceAccountName"),
        ("entrypoint", "templates"),
    )
    parameters: tuple[Parameter, ...] = ()
    if "arguments" in spec:
        _fields(spec["arguments"], f"{where}.spec.arguments", ("parameters",))
        parameters = _parameters(
            spec["arguments"].get("parameters"), f"{where}.spec.arguments.parameters", values=False
        )
    ttl = None
    if "ttlStrategy" in spec:
        _fields(spec["ttlStrategy"], f"{where}.spec.ttlStrategy", ("secondsAfterCompletion",))
        ttl = float(
            _int_or_string(
                spec["ttlStrategy"].get("secondsAfterCompletion"),
                f"{where}.spec.ttlStrategy.secondsAfterCompletion",
            )
        )
    templates: dict[str, Template] = {}
    for index, raw in enumerate(spec["templates"] or []):
        template = _template(raw, f"{where}.spec.templates[{index}]")
        if template.name in templates:
            raise WorkflowError(f"{where}.spec.templates[{index}].name: {template.name!r} twice")
        templates[template.name] = template
    workflow = WorkflowTemplate(
        name=_text(meta["name"], f"{where}.metadata.name"),
        entrypoint=_text(spec["entrypoint"], f"{where}.spec.entrypoint"),
        on_exit=spec.get("onExit"),
        parameters=parameters,
        templates=templates,
        ttl_after_completion=ttl,
        source=source,
    )
    return _checked(workflow, where)


def _checked(workflow: WorkflowTemplate, where: str) -> WorkflowTemplate:
    """Resolve every reference now, so that a mistake fails at load, not half way through."""
    templates = workflow.templates
    entry = templates.get(workflow.entrypoint)
    if entry is None or not entry.tasks:
        raise WorkflowError(
            f"{where}.spec.entrypoint: {workflow.entrypoint!r} must name a dag template"
        )
    workflow_names = {f"workflow.parameters.{p.name}" for p in workflow.parameters} | {
        "workflow.name",
        "workflow.namespace",
    }
    if workflow.on_exit is not None:
        handler = templates.get(workflow.on_exit)
        if handler is None or handler.http is None:
            raise WorkflowError(
                f"{where}.spec.onExit: {workflow.on_exit!r} must name an http template"
            )
        _check_http(
            handler, workflow_names | {"workflow.status"}, f"{where}: template {handler.name}"
        )
    tasks = {task.name: task for task in entry.tasks}
    if len(tasks) != len(entry.tasks):
        raise WorkflowError(f"{where}: template {entry.name} has two tasks of the same name")
    for task in entry.tasks:
        here = f"{where}: task {task.name}"
        target = templates.get(task.template)
        if target is None or target.http is None:
            raise WorkflowError(f"{here}: template {task.template!r} must name an http template")
        for name in task.depends.names if task.depends else []:
            base, _, result = name.partition(".")
            if base not in tasks:
                raise WorkflowError(f"{here}: depends on {base!r}, which is not a task")
            if result and result not in RESULTS:
                raise WorkflowError(f"{here}: {result!r} is not a task result ({sorted(RESULTS)})")
        declared = {p.name for p in target.inputs}
        for name in task.arguments:
            if name not in declared:
                raise WorkflowError(f"{here}: argument {name!r} is not an input of {target.name}")
        for parameter in target.inputs:
            if parameter.default is None and parameter.name not in task.arguments:
                raise WorkflowError(f"{here}: input {parameter.name!r} of {target.name} not given")
        ancestors = _ancestors(task.name, tasks)
        for value in task.arguments.values():
            for name in _placeholders(value, here):
                match = re.fullmatch(r"tasks\.([^.]+)\.outputs\.result", name)
                if match and match[1] in ancestors:
                    continue
                if name not in workflow_names:
                    raise WorkflowError(f"{here}: cannot resolve {{{{{name}}}}}")
        _check_http(target, workflow_names, f"{where}: template {target.name}")
    leaves = [name for name in tasks if not any(name in t.dependencies for t in tasks.values())]
    return replace(workflow, leaves=tuple(leaves))


def _check_http(template: Template, available: set[str], where: str) -> None:
    assert template.http is not None
    names = available | {f"inputs.parameters.{p.name}" for p in template.inputs}
    texts = [template.http.url, template.http.body, *(v for _, v in template.http.headers)]
    for text in texts:
        for name in _placeholders(text, where):
            if name not in names:
                raise WorkflowError(f"{where}: cannot resolve {{{{{name}}}}}")


def _placeholders(text: str, where: str) -> list[str]:
    try:
        return placeholders(text)
    except ExpressionError as exc:
        raise WorkflowError(f"{where}: {exc}") from None


def _ancestors(name: str, tasks: Mapping[str, Task]) -> set[str]:
    """The tasks `name` depends on, directly or not; WorkflowError on a cycle."""
    seen: set[str] = set()
    path: list[str] = []

    def visit(current: str) -> None:
        if current in path:
            raise WorkflowError(f"tasks depend on each other: {' -> '.join([*path, current])}")
        path.append(current)
        for dependency in tasks[current].dependencies:
            if dependency not in seen:
                visit(dependency)
                seen.add(dependency)
        path.pop()

    visit(name)
    return seen


def load_templates(folder: Path) -> dict[str, WorkflowTemplate]:
    """Every `*.yaml` of `folder`, one WorkflowTemplate each (as the chart installs them)."""
    templates: dict[str, WorkflowTemplate] = {}
    for path in sorted(folder.glob("*.yaml")):
        try:
            document = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise WorkflowError(f"{path}: cannot read: {exc}") from None
        template = parse_template(document, str(path))
        if template.name in templates:
            raise WorkflowError(f"{path}: WorkflowTemplate {template.name!r} is defined twice")
        templates[template.name] = template
    return templates


# -- Workflow ----------------------------------------------------------------------------


def parse_submission(document: Any, templates: Mapping[str, WorkflowTemplate]) -> Submission:
    """A submitted Workflow: by workflowTemplateRef, with every required argument given."""
    where = "Workflow"
    _fields(document, where, ("apiVersion", "kind", "metadata", "spec"), ("metadata", "spec"))
    if (
        document.get("kind", "Workflow") != "Workflow"
        or document.get("apiVersion", API_VERSION) != API_VERSION
    ):
        raise WorkflowError(f"{where}: expected kind Workflow, apiVersion {API_VERSION}")
    meta = document["metadata"]
    _fields(meta, f"{where}.metadata", ("name", "namespace", "labels", "annotations"), ("name",))
    name = _text(meta["name"], f"{where}.metadata.name")
    if len(name) > 253 or not _NAME.match(name):
        raise WorkflowError(f"{where}.metadata.name: {name!r} is not a valid Kubernetes name")
    labels = meta.get("labels") or {}
    if not isinstance(labels, Mapping):
        raise WorkflowError(f"{where}.metadata.labels: must be a mapping")
    spec = document["spec"]
    _fields(
        spec,
        f"{where}.spec",
        ("workflowTemplateRef", "arguments", "serviceAccountName"),
        ("workflowTemplateRef",),
    )
    _fields(spec["workflowTemplateRef"], f"{where}.spec.workflowTemplateRef", ("name",), ("name",))
    template_name = spec["workflowTemplateRef"]["name"]
    template = templates.get(template_name)
    if template is None:
        raise WorkflowError(
            f"{where}.spec.workflowTemplateRef.name: no WorkflowTemplate {template_name!r} "
            f"(devplane has {', '.join(sorted(templates)) or 'none'})"
        )
    given: dict[str, str] = {}
    if "arguments" in spec:
        _fields(spec["arguments"], f"{where}.spec.arguments", ("parameters",))
        for parameter in _parameters(
            spec["arguments"].get("parameters"), f"{where}.spec.arguments.parameters", values=True
        ):
            assert parameter.default is not None
            given[parameter.name] = parameter.default
    arguments: dict[str, str] = {}
    for parameter in template.parameters:
        value = given.pop(parameter.name, parameter.default)
        if value is None:
            raise WorkflowError(
                f"{where}.spec.arguments.parameters: {parameter.name!r} is required by "
                f"{template.name}"
            )
        arguments[parameter.name] = value
    if given:
        raise WorkflowError(
            f"{where}.spec.arguments.parameters: {sorted(given)[0]!r} is not a parameter of "
            f"{template.name}"
        )
    return Submission(
        name,
        str(meta.get("namespace") or "default"),
        template.name,
        arguments,
        {str(k): str(v) for k, v in labels.items()},
    )
