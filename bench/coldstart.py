"""Cold start: time from process spawn to the first answered CloudEvent (or REST request).

The harness spawns the server pinned to one core and, from the other core, POSTs a
binary-mode CloudEvent every 2 ms until one gets an answer that is not a 5xx (a function
answers 503 while its start-up hooks have not finished). That covers interpreter start,
imports, app construction, client set-up, start-up hooks and the first request. Each
target's first run is discarded (it warms the page cache and writes the bytecode the measured
runs load, as an image has it); runs are interleaved. Beside the wall time, the server's CPU
time until its first answer is recorded: on a shared machine it moves much less.

Every function in the chart's values (`functions.*.module`) is measured, with its real imports
and clients, against a real MongoDB-protocol server and a real MinIO server
(devplane.servers), with a sink that accepts emitted events; one that fails to start is
reported as not measured, with the reason. Each is probed with what it receives first in
use: an event if Triggers (or the dead-letter sink) deliver to it, else a REST request (a GET
through its FastAPI routes, `REST_PROBES`), because a function builds its REST routes on its
first REST request, not before its first event: for a REST-only service that request pays
for them.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import yaml

from bench.common import (
    RESULTS,
    ROOT,
    VENV_BIN,
    WORK,
    Cores,
    Server,
    Target,
    ensure_ff_env,
    event_targets,
    header,
    load_average,
    median,
    pin_self,
    versions,
    write_json,
)

VALUES = ROOT / "charts" / "knative-playbook" / "values.yaml"
ECHO_GOAL_MS = 350
SERVICE_GOAL_MS = 600
# What a REST-only service (no Triggers, not the dead-letter sink) is probed with: a GET of a
# real route where one reads by id, else of a path no route has, which FastAPI answers 404
# after building the app and every route, as any first REST request would.
REST_PROBES = {
    "products-api": "/products/000000000000000000000000",
    "orders-api": "/orders/000000000000000000000000",
    "bulk-jobs": "/jobs/000000000000000000000000",
}
UNROUTED = "/cold-start-probe"
# Filled by discover_services: target key -> the GET path probing it (REST-only services).
GET_PROBES: dict[str, str] = {}


@dataclass(frozen=True)
class Params:
    runs: int = 7
    services: bool = True


def discover_services() -> list[Target]:
    """Every function in the chart's values, served as its image serves it."""
    values = yaml.safe_load(VALUES.read_text())
    functions = values.get("functions", {})
    dead_letter_sink = values.get("eventing", {}).get("delivery", {}).get("deadLetterSink")
    found = []
    for name, spec in functions.items():
        module = (spec or {}).get("module")
        if not module:
            continue
        argv = (str(VENV_BIN / "fnkit-serve"), module, "--host", "127.0.0.1", "--port", "{port}")
        env = (("ENVIRONMENT", "dev"), ("MONGO_DB", f"bench_{name.replace('-', '_')}"))
        note = f"fnkit-serve {module}"
        if not (spec.get("triggers") or name == dead_letter_sink):
            path = REST_PROBES.get(name, UNROUTED)
            GET_PROBES[f"svc:{name}"] = path
            note += f"; REST only, so probed with GET {path} (answered through its REST routes)"
        found.append(Target(f"svc:{name}", name, argv, env=env, note=note))
    return found


def ensure_workspace_env() -> None:
    """Install every workspace package: the root project depends on none of the services, so
    `uv run` alone leaves a service added since the last full sync out of the environment."""
    subprocess.run(
        ["uv", "sync", "--all-packages", "--all-groups", "--frozen", "--inexact", "--quiet"],
        check=True,
        cwd=ROOT,
    )


class _Sink(BaseHTTPRequestHandler):
    """Accepts every emitted event, as a broker would."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(202)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def service_environment() -> Iterator[dict[str, str]]:
    """Real MongoDB and MinIO servers, and an event sink, for the services' cold starts."""
    from devplane.servers import minio_server, mongo_server

    root = WORK / "servers"
    root.mkdir(parents=True, exist_ok=True)
    mongo, minio = mongo_server(root), minio_server(root)
    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    try:
        mongo.start()
        minio.start()
        yield {
            "MONGO_URL": mongo.url,
            "MINIO_ENDPOINT": minio.endpoint,
            "MINIO_ACCESS_KEY": minio.access_key,
            "MINIO_SECRET_KEY": minio.secret_key,
            "K_SINK": f"http://127.0.0.1:{sink.server_address[1]}/",
        }
    finally:
        sink.shutdown()
        minio.stop()
        mongo.stop()


def cold_start(target: Target, cores: Cores, env: dict[str, str]) -> tuple[float, float, int]:
    """Milliseconds from spawn to the first answered probe (event or GET), the server's CPU
    milliseconds until then, and the answer's status."""
    server = Server(target, cores, env=env)
    server.start()
    get = GET_PROBES.get(target.key)
    try:
        wall = server.wait_answered(timeout=60.0, get=get) * 1000
        return wall, server.cpu_seconds() * 1000, server.answered_status
    finally:
        server.stop()


def run(params: Params, only: list[str] | None = None) -> dict[str, Any]:
    cores = Cores.pick()
    pin_self(cores)
    ensure_ff_env()
    targets = [t for t in event_targets() if not only or t.key in only]
    failed: dict[str, str] = {}
    stack = contextlib.ExitStack()
    env: dict[str, str] = {}
    if params.services:
        ensure_workspace_env()
        services = [t for t in discover_services() if not only or t.label in only]
        if services:
            from devplane.servers import ServerUnavailable

            try:
                env = stack.enter_context(service_environment())
            except ServerUnavailable as exc:  # the echo figures are still worth having
                failed.update({t.label: f"no test servers: {exc}" for t in services})
                services = []
        targets += services
    load_before = load_average()
    times: dict[str, list[float]] = {t.key: [] for t in targets}
    cpu: dict[str, list[float]] = {t.key: [] for t in targets}
    statuses: dict[str, int] = {}
    with stack:
        for run_no in range(params.runs + 1):
            for target in targets:
                if target.label in failed:
                    continue
                try:
                    ms, cpu_ms, statuses[target.key] = cold_start(target, cores, env)
                except RuntimeError as exc:  # one broken service must not cost the others
                    failed[target.label] = str(exc).strip().splitlines()[-1][:200]
                    print(f"run {run_no}/{params.runs} {target.label:<30} failed", flush=True)
                    continue
                if run_no:  # the first run of each target only warms the caches
                    times[target.key].append(ms)
                    cpu[target.key].append(cpu_ms)
                print(
                    f"run {run_no}/{params.runs} {target.label:<30} {ms:7.1f} ms "
                    f"(CPU {cpu_ms:5.0f} ms){'  (warm-up, discarded)' if not run_no else ''}",
                    flush=True,
                )
    measured = [t for t in targets if t.label not in failed]
    payload = {
        "params": {"runs": params.runs},
        "cores": {"server": cores.server, "load": cores.load},
        "load_before": load_before,
        "load_after": load_average(),
        "versions": versions(),
        "targets": {
            t.key: {
                "label": t.label,
                "note": t.note,
                "service": t.key.startswith("svc:"),
                "probe": "GET" if t.key in GET_PROBES else "event",
                "status": statuses[t.key],
                "ms": times[t.key],
                "cpu_ms": cpu[t.key],
            }
            for t in measured
        },
        "failed": failed,
    }
    write_json("coldstart", payload)
    write_markdown(payload)
    return payload


def summary(payload: dict[str, Any]) -> dict[str, dict[str, float]]:
    return {
        key: {
            "median": median(e["ms"]),
            "min": min(e["ms"]),
            "max": max(e["ms"]),
            "cpu": median(e["cpu_ms"]),
        }
        for key, e in payload["targets"].items()
    }


def write_markdown(payload: dict[str, Any]) -> None:
    cores = Cores(**payload["cores"])
    stats = summary(payload)
    lines = header(
        "Cold start: process spawn to first answered request (event, or GET where REST only)",
        cores,
        payload["load_before"],
        payload["load_after"],
        payload["versions"],
    )
    lines += [
        f"- Parameters: {payload['params']['runs']} runs per target after one discarded warm-up "
        "run, interleaved; a binary-mode CloudEvent (or, for a REST-only service, a GET) sent "
        "every 2 ms from the other core until "
        "an answer that is not a 5xx; modules load from bytecode written by the warm-up run "
        "(the images compile theirs at build time)",
        "",
        "| target | median ms | min - max ms | vs bare ASGI | vs functions-framework | "
        "CPU ms | CPU vs bare | answered | goal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    bare, ff = stats.get("bare", {}), stats.get("ff", {})
    for key, entry in payload["targets"].items():
        s = stats[key]
        goal = SERVICE_GOAL_MS if entry["service"] else ECHO_GOAL_MS if key == "fnkit" else None
        verdict = (
            "" if goal is None else (f"<= {goal} ms: {'met' if s['median'] <= goal else 'missed'}")
        )
        vs_bare = f"{s['median'] / bare['median']:.2f}x" if bare else "-"
        vs_ff = f"{s['median'] / ff['median']:.2f}x" if ff else "-"
        cpu_vs_bare = f"{s['cpu'] / bare['cpu']:.2f}x" if bare and bare["cpu"] else "-"
        lines.append(
            f"| {entry['label']} | {s['median']:.0f} | {s['min']:.0f} - {s['max']:.0f} | "
            f"{vs_bare} | {vs_ff} | {s['cpu']:.0f} | {cpu_vs_bare} | {entry['status']} | "
            f"{verdict} |"
        )
    for name, why in payload["failed"].items():
        lines.append(f"| {name} | - | - | - | - | - | - | - | not measured: {why} |")
    lines += [
        "",
        "`answered` is the status of the first answer; any status below 500 counts, and a "
        "function answers 503 until its clients are made and its start-up hooks have run. A "
        "service is probed with what it receives first in use. One that Triggers (or the "
        "dead-letter sink) deliver to gets an event of a type no service subscribes to, and "
        "answers as its contract says for that (400: no handler), or 2xx if it takes every "
        "type (dead-letter); the echo functions answer 200. A REST-only service gets a GET "
        "(see its target note), 404 for an id or path that is not there: a function builds "
        "its REST routes (FastAPI) on its first REST request rather than before it is ready, "
        "so that request pays for them. `CPU ms` is the "
        "server's user + system CPU time from spawn to that answer (its whole process tree): "
        "the work a cold start costs, which a busy machine stretches in wall time but changes "
        "much less.",
        "",
        "Targets:",
        "",
    ]
    lines += [f"- **{e['label']}**: {e['note']}" for e in payload["targets"].values()]
    (RESULTS / "coldstart.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.coldstart", description=__doc__)
    parser.add_argument("--runs", type=int, default=Params.runs)
    parser.add_argument("--no-services", action="store_true", help="only echo and baselines")
    parser.add_argument(
        "--only", nargs="*", help="target keys: fnkit ff ff-asgi bare, or service names"
    )
    args = parser.parse_args(argv)
    run(Params(args.runs, not args.no_services), args.only)


if __name__ == "__main__":
    main()
