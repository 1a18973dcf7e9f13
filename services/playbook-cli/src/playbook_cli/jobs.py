"""`playbook job submit | status`: bulk jobs of the fan-out pattern, with a progress bar."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from playbook_cli.cloudevent import new_traceparent, trace_id
from playbook_cli.endpoints import Endpoints, checked, request
from playbook_cli.output import Output, Progress

SERVICE = "bulk-jobs"
FINAL = frozenset({"COMPLETED", "FAILED"})
SHOWN_FAILURES = 20


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "job",
        help="submit a bulk job and follow its progress",
        description="Bulk jobs of the fan-out pattern (bulk-jobs, item-processor, job-aggregator).",
    )
    sub = parser.add_subparsers(dest="job_command", required=True, metavar="COMMAND")
    submit = sub.add_parser(
        "submit",
        help="submit a job; with --follow, show its progress, then the summary",
        description="POST the job in FILE ('-': standard input) to bulk-jobs. With --follow, "
        "show a progress bar until every item is processed or failed, then the summary.",
    )
    submit.add_argument("file", help="the job as JSON ('-': standard input)")
    _follow_options(submit)
    submit.set_defaults(run=run_submit)
    status = sub.add_parser(
        "status",
        help="a job's progress, or its summary once done",
        description="Show a job's progress; with --follow, until it completes.",
    )
    status.add_argument("id", help="the job id")
    _follow_options(status)
    status.set_defaults(run=run_status)


def _follow_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--follow", action="store_true", help="follow until done")
    parser.add_argument(
        "--wait", type=float, default=600.0, help="longest follow, in seconds (%(default)s)"
    )
    parser.add_argument(
        "--interval", type=float, default=0.5, help="seconds between polls (%(default)s)"
    )


def run_submit(args: argparse.Namespace, endpoints: Endpoints, out: Output) -> int:
    text = sys.stdin.read() if args.file == "-" else _read(args.file)
    try:
        job = json.loads(text)
    except ValueError as exc:
        raise SystemExit(f"playbook job submit: {args.file} is not JSON: {exc}") from None
    with endpoints.client(SERVICE) as client:
        traceparent = new_traceparent()
        accepted = checked(
            request(client, "POST", "/jobs", json=job, headers={"traceparent": traceparent})
        )
        job_id = str(accepted["id"])
        total = accepted.get("total")
        items = f"{total} items" if total is not None else "items being counted"
        out.line(f"job {job_id} accepted: {items}, trace {trace_id(traceparent)}")
        if not args.follow:
            out.record(accepted, "")
            return 0
        return _follow(client, job_id, args, out)


def run_status(args: argparse.Namespace, endpoints: Endpoints, out: Output) -> int:
    with endpoints.client(SERVICE) as client:
        if args.follow:
            return _follow(client, args.id, args, out)
        job = checked(request(client, "GET", _path(args.id)))
    done, total, failed = counts(job)
    out.record(job, f"job {args.id}: {job.get('status')}, {done}/{total} done, {failed} failed")
    return 0


def _follow(client: httpx.Client, job_id: str, args: argparse.Namespace, out: Output) -> int:
    deadline = time.monotonic() + args.wait
    progress = Progress(out.err, f"job {job_id}")
    try:
        while True:
            job = checked(request(client, "GET", _path(job_id)))
            done, total, failed = counts(job)
            progress.update(done, total, failed)
            if job.get("status") in FINAL:
                break
            if time.monotonic() > deadline:
                out.note(f"job {job_id} still {job.get('status')} after {args.wait:g}s")
                return 1
            time.sleep(args.interval)
    finally:
        progress.close()
    failures = checked(
        request(
            client,
            "GET",
            f"{_path(job_id)}/results",
            params={"outcome": "failed", "limit": SHOWN_FAILURES},
        )
    )["items"]
    out.record({"job": job, "failures": failures}, describe_summary(job, failures))
    return 0 if job.get("status") == "COMPLETED" else 1


def counts(job: dict[str, Any]) -> tuple[int, int, int]:
    """(items with a result, items in all, items failed); all of it 0 while being counted."""
    succeeded, failed = int(job.get("succeeded") or 0), int(job.get("failed") or 0)
    return succeeded + failed, int(job.get("total") or 0), failed


def describe_summary(job: dict[str, Any], failures: list[dict[str, Any]]) -> str:
    done, total, failed = counts(job)
    lines = [
        f"job {job.get('id')}: {job.get('status')}, {total} items: "
        f"{done - failed} succeeded, {failed} failed"
    ]
    if job.get("error"):
        lines.append(f"  stopped: {job['error']}")
    for result in failures:
        lines.append(f"  item {result['index']}: {result.get('reason')}")
    if failed > len(failures):
        lines.append(f"  ... and {failed - len(failures)} more (GET /jobs/{job.get('id')}/results)")
    return "\n".join(lines)


def _path(job_id: str) -> str:
    return f"/jobs/{quote(job_id, safe='')}"


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise SystemExit(f"playbook: cannot read {path}: {exc.strerror}") from None
