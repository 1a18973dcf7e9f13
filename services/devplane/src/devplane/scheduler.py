"""CronJobs run locally: each enabled job's command, as a subprocess, on its schedule.

The command is the one the chart puts in the job's container; `python` in it means this
interpreter, so the job runs from the workspace's environment. Its environment is devplane's
own, plus what the chart's ConfigMap gives the job (EVENT_SOURCE, the buckets, WARMER_TARGETS
resolved to local URLs, the job's `env`), plus what the cluster would inject: K_SINK (this
broker) and the Mongo/MinIO settings.
Runs are also started by hand (`POST /cron/{name}/run`). Missed times (devplane was not
running) are skipped, not caught up.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import sys
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from devplane import metrics
from devplane.config import CronJob

log = logging.getLogger("devplane.cron")

OUTPUT_LINES = 40
HISTORY = 20
_run_ids = itertools.count(1)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class CronRun:
    job: str
    trigger: Literal["schedule", "manual"]
    id: str = field(default_factory=lambda: str(next(_run_ids)))
    started_at: datetime = field(default_factory=_now)
    finished_at: datetime | None = None
    exit_code: int | None = None
    error: str | None = None
    output: deque[str] = field(default_factory=lambda: deque(maxlen=OUTPUT_LINES))

    @property
    def state(self) -> str:
        if self.finished_at is None:
            return "running"
        return "succeeded" if self.exit_code == 0 else "failed"

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "job": self.job,
            "trigger": self.trigger,
            "state": self.state,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "exit_code": self.exit_code,
            "error": self.error,
            "output": list(self.output),
        }


class CronRunner:
    def __init__(self, jobs: Mapping[str, CronJob], env: Mapping[str, str]) -> None:
        self.jobs = jobs
        self.env = dict(env)
        self.next_runs: dict[str, datetime] = {}
        self.runs: dict[str, deque[CronRun]] = {name: deque(maxlen=HISTORY) for name in jobs}
        self._tasks: set[asyncio.Task[None]] = set()
        self._processes: set[asyncio.subprocess.Process] = set()
        self._scheduler: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the schedule (runs by hand work without it)."""
        now = _now()
        self.next_runs = {
            name: job.schedule.next_after(now) for name, job in self.jobs.items() if job.enabled
        }
        self._scheduler = asyncio.create_task(self._schedule(), name="cron-scheduler")

    async def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.cancel()
        for process in list(self._processes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _schedule(self) -> None:
        while self.next_runs:
            name, due = min(self.next_runs.items(), key=lambda item: item[1])
            wait = (due - _now()).total_seconds()
            if wait > 0:
                # Wake up at least every 30 s, so a changed wall clock is noticed.
                await asyncio.sleep(min(wait, 30.0))
                continue
            self.run_now(name, "schedule")
            self.next_runs[name] = self.jobs[name].schedule.next_after(max(due, _now()))

    def run_now(self, name: str, trigger: Literal["schedule", "manual"] = "manual") -> CronRun:
        """Start a run of job `name` (KeyError if there is no such job)."""
        job = self.jobs[name]
        run = CronRun(name, trigger)
        self.runs[name].append(run)
        task = asyncio.create_task(self._execute(job, run), name=f"cron-{name}-{run.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return run

    async def _execute(self, job: CronJob, run: CronRun) -> None:
        argv = list(job.command)
        if argv[0] in ("python", "python3"):
            argv[0] = sys.executable
        env = {
            **os.environ,
            **job.env,
            **self.env,
            "DEVPLANE_CRON_JOB": job.name,
            "DEVPLANE_CRON_RUN": run.id,
        }
        log.info(
            "cron job started",
            extra={"job": job.name, "run": run.id, "trigger": run.trigger, "command": argv},
        )
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            run.error = f"cannot start {argv[0]}: {exc}"
            self._finished(run)
            return
        self._processes.add(process)
        try:
            assert process.stdout is not None
            async for raw in process.stdout:
                line = raw.decode(errors="replace").rstrip()
                run.output.append(line)
                log.info(line, extra={"job": job.name, "run": run.id})
            run.exit_code = await process.wait()
        finally:
            self._processes.discard(process)
            self._finished(run)

    def _finished(self, run: CronRun) -> None:
        run.finished_at = _now()
        metrics.CRON_RUNS.labels(run.job, run.state).inc()
        log.log(
            logging.INFO if run.state == "succeeded" else logging.WARNING,
            "cron job finished",
            extra={
                "job": run.job,
                "run": run.id,
                "state": run.state,
                "exit_code": run.exit_code,
                "error": run.error,
            },
        )

    def view(self, name: str) -> dict[str, Any]:
        job = self.jobs[name]
        upcoming = self.next_runs.get(name)
        return {
            "name": name,
            "enabled": job.enabled,
            "schedule": job.schedule.expression,
            "timeZone": job.schedule.tz.key,
            "command": list(job.command),
            "next_run": upcoming.isoformat() if upcoming else None,
            "runs": [run.view() for run in reversed(self.runs[name])],
        }
