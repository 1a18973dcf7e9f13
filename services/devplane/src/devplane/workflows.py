"""devplane's workflow runner: the repository's Argo WorkflowTemplates, run in-process.

It runs the subset workflow_spec.py accepts, with Argo's semantics (3.6, read from its
controller and agent):

- A DAG task starts once every task its `depends` names is fulfilled (done, or omitted); it
  then runs if the expression holds and is Omitted otherwise. A bare name means
  `.Succeeded || .Skipped || .Daemoned`.
- An HTTP template succeeds on a 2xx answer; its body is `outputs.result`. Otherwise it fails
  with Argo's message: `received non-2xx response code: <status>`, or the request's error.
- `retryStrategy`, in the controller's order: with a backoff, fail once `maxDuration` (from the
  first attempt's start) has passed or the next wait would pass it; wait `duration *
  factor^(attempts-1)` (only while attempts <= limit, as Argo does: so even a failure the
  expression will not retry waits one backoff first); then `retryPolicy`; then `limit`; then
  `expression` over `lastRetry.*`.
- The DAG's phase is Failed if a leaf task failed, or was omitted on a branch that failed
  (Argo's branch-phase rule); then `onExit` runs with `{{workflow.status}}` set, and a failed
  exit handler fails a workflow that had succeeded.
- Workflow names are unique while kept: a second submission of a name gets 409, as the
  Kubernetes API answers. Finished runs are forgotten after the template's `ttlStrategy`, or
  when more than `DEVPLANE_WORKFLOW_HISTORY` are kept.

URLs of in-cluster services (`http://<function>.<namespace>.svc.cluster.local/...`, also
`.svc` and the short forms) are sent to the function's local address from the chart's values,
as Triggers are. Runs live in memory: a devplane restart forgets the ones in flight (Argo keeps
them in the cluster). Every step attempt is logged (logger `devplane.workflows`), and `GET
/workflows/{name}` shows each run's tasks, attempts, messages and results.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import httpx
from fnkit import Conflict, NotFound
from prometheus_client import Counter

from devplane.config import subscriber_url
from devplane.workflow_expr import substitute
from devplane.workflow_spec import (
    HttpCall,
    Submission,
    Task,
    Template,
    WorkflowTemplate,
    parse_submission,
)

log = logging.getLogger("devplane.workflows")

RUNS: Final = Counter(
    "devplane_workflow_runs", "Workflows finished, by template and phase.", ["template", "phase"]
)
ATTEMPTS: Final = Counter(
    "devplane_workflow_attempts",
    "HTTP attempts of workflow steps, by template, task and phase.",
    ["template", "task", "phase"],
)

SUCCEEDED: Final = "Succeeded"
FAILED: Final = "Failed"
ERROR: Final = "Error"
OMITTED: Final = "Omitted"
RUNNING: Final = "Running"
PENDING: Final = "Pending"
_FULFILLED: Final = frozenset({SUCCEEDED, FAILED, ERROR, OMITTED, "Skipped"})
_RESULT_PHASES: Final = {
    "Succeeded": (SUCCEEDED,),
    "Failed": (FAILED,),
    "Errored": (ERROR,),
    "Skipped": ("Skipped",),
    "Omitted": (OMITTED,),
    "Daemoned": (),
}
_CLUSTER_SUFFIXES: Final = (".svc.cluster.local", ".svc")


class AlreadyExists(Conflict):
    code = "already_exists"


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class Attempt:
    number: int
    started_at: datetime
    finished_at: datetime | None = None
    phase: str = RUNNING
    message: str = ""
    status_code: int | None = None

    def view(self) -> dict[str, Any]:
        return {
            "attempt": self.number,
            "phase": self.phase,
            "status_code": self.status_code,
            "message": self.message,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
        }


@dataclass(slots=True)
class Node:
    """A task of the DAG (or the exit handler) and what became of it."""

    name: str
    template: str
    phase: str = PENDING
    message: str = ""
    result: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def fulfilled(self) -> bool:
        return self.phase in _FULFILLED

    def finish(self, phase: str, message: str = "") -> None:
        self.phase, self.message, self.finished_at = phase, message, _now()

    def view(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "template": self.template,
            "phase": self.phase,
            "message": self.message,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "attempts": [a.view() for a in self.attempts],
            "result": self.result,
        }


@dataclass(slots=True)
class Run:
    """One Workflow."""

    submission: Submission
    template: WorkflowTemplate
    nodes: dict[str, Node]
    phase: str = RUNNING
    message: str = ""
    exit: Node | None = None
    created_at: datetime = field(default_factory=_now)
    finished_at: datetime | None = None
    task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.submission.name

    def summary(self) -> dict[str, Any]:
        done = sum(1 for n in self.nodes.values() if n.phase in (SUCCEEDED, FAILED, ERROR))
        ran = sum(1 for n in self.nodes.values() if n.phase != OMITTED)
        return {
            "name": self.name,
            "namespace": self.submission.namespace,
            "template": self.template.name,
            "phase": self.phase,
            "message": self.message,
            "progress": f"{done}/{ran}",
            "created_at": _iso(self.created_at),
            "finished_at": _iso(self.finished_at),
        }

    def view(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "labels": dict(self.submission.labels),
            "parameters": dict(self.submission.arguments),
            "nodes": [node.view() for node in self.nodes.values()],
            "exit_handler": self.exit.view() if self.exit else None,
        }


class WorkflowRunner:
    """Accepts Workflows of the loaded templates and runs each in its own task."""

    def __init__(
        self,
        templates: Mapping[str, WorkflowTemplate],
        function_urls: Mapping[str, str],
        *,
        history: int,
    ) -> None:
        self.templates = templates
        self.function_urls = function_urls
        self.history = history
        self._runs: dict[str, Run] = {}
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._client = httpx.AsyncClient(follow_redirects=False)

    async def stop(self) -> None:
        running = [r.task for r in self._runs.values() if r.task and not r.task.done()]
        if running:
            log.warning(
                "stopping with workflows in flight; they are lost", extra={"runs": len(running)}
            )
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    # -- the API's operations ------------------------------------------------------------

    def submit(self, document: Any) -> Run:
        """Start a Workflow; AlreadyExists (409) if its name is taken, WorkflowError (422)."""
        submission = parse_submission(document, self.templates)
        self._forget_old()
        if submission.name in self._runs:
            raise AlreadyExists(f'workflows.argoproj.io "{submission.name}" already exists')
        template = self.templates[submission.template]
        nodes = {task.name: Node(task.name, task.template) for task in template.dag().tasks}
        run = Run(submission, template, nodes)
        self._runs[run.name] = run
        run.task = asyncio.create_task(self._run(run), name=f"workflow-{run.name}")
        log.info("workflow submitted", extra={"workflow": run.name, "template": template.name})
        return run

    def get(self, name: str) -> Run:
        self._forget_old()
        run = self._runs.get(name)
        if run is None:
            raise NotFound(f"no workflow {name!r}")
        return run

    def list(self) -> list[Run]:
        self._forget_old()
        return list(reversed(self._runs.values()))

    def _forget_old(self) -> None:
        now = _now()
        for name, run in list(self._runs.items()):
            ttl = run.template.ttl_after_completion
            if (
                run.finished_at
                and ttl is not None
                and now - run.finished_at > timedelta(seconds=ttl)
            ):
                del self._runs[name]
        finished = [name for name, run in self._runs.items() if run.finished_at is not None]
        for name in finished[: max(0, len(self._runs) - self.history)]:
            del self._runs[name]

    # -- execution -----------------------------------------------------------------------

    async def _run(self, run: Run) -> None:
        template = run.template
        try:
            await self._dag(run, template.dag())
            phase = self._dag_phase(run)
            run.phase, run.message = phase, "" if phase == SUCCEEDED else _first_failure(run)
            if template.on_exit is not None:
                handler = template.templates[template.on_exit]
                run.exit = Node(f"{run.name}.onExit", handler.name)
                await self._execute(run, run.exit, handler, {}, {"workflow.status": phase})
                if phase == SUCCEEDED and run.exit.phase in (FAILED, ERROR):
                    run.phase, run.message = run.exit.phase, run.exit.message
        except Exception as exc:
            log.exception("workflow crashed", extra={"workflow": run.name})
            run.phase, run.message = ERROR, f"devplane: {type(exc).__name__}: {exc}"
        finally:
            run.finished_at = _now()
            RUNS.labels(template.name, run.phase).inc()
            log.info(
                "workflow finished",
                extra={"workflow": run.name, "phase": run.phase, "detail": run.message},
            )

    async def _dag(self, run: Run, dag: Template) -> None:
        tasks = {task.name: task for task in dag.tasks}
        pending = list(tasks)
        running: dict[asyncio.Task[None], str] = {}
        while pending or running:
            for name in list(pending):
                task, node = tasks[name], run.nodes[name]
                if not all(run.nodes[d].fulfilled for d in task.dependencies):
                    continue
                pending.remove(name)
                if task.depends is None or task.depends.evaluate(self._results(run)):
                    node.phase, node.started_at = RUNNING, _now()
                    running[asyncio.create_task(self._task(run, task))] = name
                else:
                    node.started_at = _now()
                    node.finish(
                        OMITTED, f"omitted: depends condition not met ({task.depends.source})"
                    )
                    log.info("workflow step omitted", extra={"workflow": run.name, "task": name})
            if not running:
                if pending:  # cannot happen in a checked template; never spin
                    raise RuntimeError(f"tasks {pending} can never start")
                return
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for finished in done:
                name = running.pop(finished)
                with contextlib.suppress(asyncio.CancelledError):
                    if (problem := finished.exception()) is not None:
                        run.nodes[name].finish(ERROR, f"devplane: {problem}")

    def _results(self, run: Run) -> Callable[[str], bool]:
        def resolve(name: str) -> bool:
            task, _, result = name.partition(".")
            phase = run.nodes[task].phase
            if not result:
                return phase in (SUCCEEDED, "Skipped")
            return phase in _RESULT_PHASES[result]

        return resolve

    async def _task(self, run: Run, task: Task) -> None:
        node = run.nodes[task.name]
        scope = self._workflow_scope(run)
        for name, other in run.nodes.items():
            if other.phase == SUCCEEDED and other.result is not None:
                scope[f"tasks.{name}.outputs.result"] = other.result
        try:
            arguments = {name: substitute(value, scope) for name, value in task.arguments.items()}
        except KeyError as exc:
            node.finish(ERROR, f"failed to resolve {{{{{exc.args[0]}}}}}")
            return
        await self._execute(run, node, run.template.templates[task.template], arguments, {})

    def _workflow_scope(self, run: Run) -> dict[str, str]:
        scope = {
            "workflow.name": run.name,
            "workflow.namespace": run.submission.namespace,
        }
        for name, value in run.submission.arguments.items():
            scope[f"workflow.parameters.{name}"] = value
        return scope

    async def _execute(
        self,
        run: Run,
        node: Node,
        template: Template,
        arguments: Mapping[str, str],
        extra: Mapping[str, str],
    ) -> None:
        """Run an HTTP template with its retryStrategy, leaving the outcome on `node`."""
        assert template.http is not None
        node.started_at = node.started_at or _now()
        node.phase = RUNNING
        scope = {**self._workflow_scope(run), **extra}
        for parameter in template.inputs:
            value = arguments.get(parameter.name, parameter.default)
            assert value is not None  # checked when the template was loaded
            scope[f"inputs.parameters.{parameter.name}"] = value
        try:
            call = HttpCall(
                substitute(template.http.url, scope),
                template.http.method,
                tuple((k, substitute(v, scope)) for k, v in template.http.headers),
                substitute(template.http.body, scope),
                template.http.timeout,
            )
        except KeyError as exc:
            node.finish(ERROR, f"failed to resolve {{{{{exc.args[0]}}}}}")
            return
        retry = template.retry
        first_start = time.monotonic()
        while True:
            attempt = await self._attempt(run, node, call)
            if attempt.phase == SUCCEEDED:
                node.finish(SUCCEEDED)
                return
            if retry is None:
                node.finish(attempt.phase, attempt.message)
                return
            tries = len(node.attempts)
            if retry.backoff is not None:
                backoff = retry.backoff
                give_up_at = None
                if backoff.max_duration is not None:
                    give_up_at = first_start + backoff.max_duration
                    if time.monotonic() > give_up_at:
                        node.finish(attempt.phase, "Max duration limit exceeded")
                        return
                wait = backoff.duration
                if backoff.factor is not None and backoff.factor > 0:
                    wait = backoff.duration * backoff.factor ** (tries - 1)
                resume_at = time.monotonic() + wait
                if give_up_at is not None and resume_at > give_up_at:
                    node.finish(attempt.phase, "Backoff would exceed max duration limit")
                    return
                if retry.limit is not None and tries <= retry.limit:
                    node.message = f"Backoff for {wait:g}s"
                    await asyncio.sleep(wait)
            retries_failures = retry.policy in ("Always", "OnFailure")
            retries_errors = retry.policy in ("Always", "OnError")
            if (attempt.phase == FAILED and not retries_failures) or (
                attempt.phase == ERROR and not retries_errors
            ):
                node.finish(attempt.phase, attempt.message)
                return
            if retry.limit is not None and tries > retry.limit:
                node.finish(attempt.phase, "No more retries left")
                return
            if retry.expression is not None and not retry.expression.evaluate(_last_retry(attempt)):
                node.finish(attempt.phase, "retryStrategy.expression evaluated to false")
                return

    async def _attempt(self, run: Run, node: Node, call: HttpCall) -> Attempt:
        assert self._client is not None
        attempt = Attempt(len(node.attempts) + 1, _now())
        node.attempts.append(attempt)
        url = self.local_url(call.url)
        try:
            async with asyncio.timeout(call.timeout):
                response = await self._client.request(
                    call.method,
                    url,
                    headers=list(call.headers),
                    content=call.body.encode(),
                    timeout=call.timeout,  # the template's timeoutSeconds, not httpx's 5 s
                )
        except TimeoutError:
            attempt.phase, attempt.message = (
                FAILED,
                f'{call.method.title()} "{call.url}": context deadline exceeded',
            )
        except httpx.HTTPError as exc:
            attempt.phase = FAILED
            attempt.message = f'{call.method.title()} "{call.url}": {type(exc).__name__}: {exc}'
        else:
            attempt.status_code = response.status_code
            node.result = response.text
            if 200 <= response.status_code < 300:
                attempt.phase = SUCCEEDED
            else:
                attempt.phase = FAILED
                attempt.message = f"received non-2xx response code: {response.status_code}"
        attempt.finished_at = _now()
        ATTEMPTS.labels(
            run.template.name, node.name if node is not run.exit else "onExit", attempt.phase
        ).inc()
        log.info(
            "workflow step attempt",
            extra={
                "workflow": run.name,
                "task": node.name,
                "attempt": attempt.number,
                "phase": attempt.phase,
                "status": attempt.status_code,
                "detail": attempt.message,
                "url": call.url,
            },
        )
        return attempt

    def local_url(self, url: str) -> str:
        """An in-cluster service URL turned into the function's local one (others unchanged)."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        for suffix in _CLUSTER_SUFFIXES:
            if host.endswith(suffix):
                host = host[: -len(suffix)]
                break
        function = host.split(".")[0]
        if host.count(".") > 1 or function not in self.function_urls:
            return url
        base = urlsplit(self.function_urls[function])
        path = (base.path.rstrip("/") + parts.path) or "/"
        return urlunsplit((base.scheme, base.netloc, path, parts.query, parts.fragment))

    def _dag_phase(self, run: Run) -> str:
        """Argo's rule: a leaf that failed, or was omitted on a failed branch, fails the DAG."""
        tasks = {task.name: task for task in run.template.dag().tasks}
        memo: dict[str, str] = {}

        def branch(name: str) -> str:
            if name not in memo:
                node = run.nodes[name]
                if node.phase in (SUCCEEDED, FAILED, ERROR):
                    memo[name] = node.phase
                else:
                    parents = [branch(d) for d in tasks[name].dependencies]
                    memo[name] = next((p for p in parents if p in (FAILED, ERROR)), SUCCEEDED)
            return memo[name]

        for leaf in run.template.leaves:
            phase = branch(leaf)
            if phase in (FAILED, ERROR):
                return phase
        return SUCCEEDED


def _last_retry(attempt: Attempt) -> Callable[[str], str]:
    duration = (attempt.finished_at or attempt.started_at) - attempt.started_at
    values = {
        "lastRetry.exitCode": "-1",  # HTTP nodes have none, as in Argo
        "lastRetry.status": attempt.phase,
        "lastRetry.duration": f"{duration.total_seconds():g}",
        "lastRetry.message": attempt.message,
    }
    return values.__getitem__


def _first_failure(run: Run) -> str:
    failed = [n for n in run.nodes.values() if n.phase in (FAILED, ERROR)]
    if not failed:
        return ""
    first = min(failed, key=lambda n: n.finished_at or _now())
    return f"child '{first.name}' failed: {first.message}"


def function_urls(values: Mapping[str, Any], url_template: str) -> dict[str, str]:
    """Each function of the values (enabled or not) at its local URL, as Triggers resolve it."""
    functions = values.get("functions") or {}
    urls: dict[str, str] = {}
    for name, function in functions.items():
        if isinstance(function, Mapping) and (function.get("url") or function.get("localPort")):
            urls[name] = subscriber_url(name, function, url_template)
    return urls
