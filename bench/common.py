"""What every benchmark shares: the targets, CPU pinning, processes, probes, machine facts."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import IO, Any, Final

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
WORK = BENCH / ".work"
FF_PROJECT = BENCH / "baselines" / "functions-framework"
VENV_BIN = Path(sys.executable).parent

# One binary-mode CloudEvent, the same one wrk sends (bench/wrk/cloudevent.lua).
EVENT_BODY = b'{"message":"hello from wrk","n":42,"tags":["bench","echo"]}'
EVENT_HEADERS = {
    "Content-Type": "application/json",
    "ce-specversion": "1.0",
    "ce-id": "bench-0001",
    "ce-source": "/bench/wrk",
    "ce-type": "io.knative-playbook.bench.requested.v1",
    "ce-time": "2026-01-02T03:04:05.678Z",
    "ce-knativearrivaltime": "2026-01-02T03:04:05.912Z",
    "ce-traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
}


# Where servers under test keep their bytecode: written by each target's first (discarded) run,
# read by the measured ones, and kept out of the source trees and virtualenvs.
BYTECODE_ENV: Final = {"PYTHONPYCACHEPREFIX": str(WORK / "pycache")}

# Read before anything pins this process (pin_self), so that every benchmark sees them all.
_CORES: Final = sorted(os.sched_getaffinity(0))


@dataclass(frozen=True)
class Cores:
    """Where the server runs and where the load generator (and this script) run."""

    server: int | None
    load: int | None

    @classmethod
    def pick(cls) -> Cores:
        cores = _CORES
        if len(cores) < 2:
            return cls(None, None)
        return cls(cores[0], cores[1])

    def pin(self, core: int | None, argv: list[str]) -> list[str]:
        return (
            argv
            if core is None or not shutil.which("taskset")
            else ["taskset", "-c", str(core), *argv]
        )

    def describe(self) -> str:
        if self.server is None:
            return "not pinned (fewer than 2 cores available)"
        return f"server on core {self.server}, load generator and harness on core {self.load}"


@dataclass(frozen=True)
class Target:
    """A server under test: how to start it on a port."""

    key: str
    label: str
    argv: tuple[str, ...]  # "{port}" is replaced with the port
    env: tuple[tuple[str, str], ...] = ()
    note: str = ""

    def command(self, port: int) -> list[str]:
        return [a.replace("{port}", str(port)) for a in self.argv]


def ff_python() -> Path:
    return FF_PROJECT / ".venv" / "bin" / "python"


def ensure_ff_env() -> None:
    """Install functions-framework's own locked environment (it cannot share the workspace's)."""
    subprocess.run(
        ["uv", "sync", "--locked", "--quiet", "--project", str(FF_PROJECT)],
        check=True,
        cwd=FF_PROJECT,
    )


def event_targets() -> list[Target]:
    """The echo function and its baselines, each serving one echo CloudEvent function."""
    ff_bin = FF_PROJECT / ".venv" / "bin" / "functions-framework"
    source = str(BENCH / "baselines" / "ff_echo.py")
    ff = (
        str(ff_bin),
        "--source",
        source,
        "--signature-type",
        "cloudevent",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
    )
    return [
        Target(
            "fnkit",
            "fnkit echo",
            (
                str(VENV_BIN / "fnkit-serve"),
                "fnkit.echo:app",
                "--host",
                "127.0.0.1",
                "--port",
                "{port}",
            ),
            env=(("ENVIRONMENT", "dev"),),
            note="fnkit-serve fnkit.echo:app (uvicorn, uvloop, httptools); replies with an event",
        ),
        Target(
            "ff",
            "functions-framework",
            (*ff[:1], "--target", "echo", *ff[1:]),
            note="default server: Flask on gunicorn (gthread, 1 worker); answers 200 OK",
        ),
        Target(
            "ff-asgi",
            "functions-framework --asgi",
            (*ff[:1], "--target", "echo_async", "--asgi", *ff[1:]),
            note="--asgi: Starlette on gunicorn's uvicorn worker (uvloop, httptools); "
            "answers 200 OK",
        ),
        Target(
            "bare",
            "bare ASGI on uvicorn",
            uvicorn_command("bench.baselines.bare_asgi:app"),
            note="no validation, metrics or logs; replies with an event",
        ),
    ]


def uvicorn_command(app: str, *, lifespan: bool = False) -> tuple[str, ...]:
    """A baseline served as fnkit-serve serves a function: uvicorn with uvloop and httptools."""
    return (
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--lifespan",
        "on" if lifespan else "off",
        "--log-level",
        "warning",
    )


def run_wrk(
    cores: Cores, url: str, script: Path, connections: int, seconds: int, *script_args: str
) -> tuple[dict[str, Any], float]:
    """wrk on the load core against `url`: its JSON summary (from `script`) and its CPU seconds."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    argv = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", str(script)]
    argv += [url, "--", *script_args] if script_args else [url]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cores.pin(cores.load, argv), capture_output=True, text=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    # Timeouts (no answer within 5 s) are latency, counted per sample; anything else is wrong.
    errors = sum(
        result[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors")
    )
    if errors:
        raise RuntimeError(f"wrk saw errors against {url}: {result}")
    return result, cpu


def wrk_summary(
    samples: list[dict[str, Any]], per_cpu: Callable[[dict[str, Any]], float]
) -> dict[str, float]:
    """Median and spread of a target's wrk runs; `per_cpu` says how a run counts CPU."""
    rps = [s["rps"] for s in samples]
    return {
        "rps": median(rps),
        "rps_min": min(rps),
        "rps_max": max(rps),
        "p50_ms": median([s["p50_ms"] for s in samples]),
        "p99_ms": median([s["p99_ms"] for s in samples]),
        "server_cpu": median([s["server_cpu"] for s in samples]),
        "per_cpu": median([per_cpu(s) for s in samples]),
        "wrk_cpu": max(s["wrk_cpu"] for s in samples),
    }


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def post_event(
    port: int, timeout: float = 2.0, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """POST the benchmark's CloudEvent; (status, lower-cased headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/", body=EVENT_BODY, headers=headers or EVENT_HEADERS)
        response = conn.getresponse()
        return (response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def get_status(port: int, path: str, timeout: float = 2.0) -> int:
    """GET `path`; the answer's status."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


@dataclass
class Server:
    """A target's process, its stdout drained by a thread (as a container runtime would)."""

    target: Target
    cores: Cores
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    lines: int = 0
    answered_status: int = 0
    _tail: bytes = b""
    _drain: threading.Thread | None = None

    def start(self) -> None:
        env = {**os.environ, **BYTECODE_ENV, **dict(self.target.env), **self.env}
        # As in the images (UV_COMPILE_BYTECODE=1): modules load from bytecode, not source. A
        # shell that sets PYTHONDONTWRITEBYTECODE would make every start compile every module.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        argv = self.cores.pin(self.cores.server, self.target.command(self.port))
        self.started_at = time.perf_counter()
        self.process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
        self._drain = threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True)
        self._drain.start()

    def _read(self, stream: IO[bytes] | None) -> None:
        assert stream is not None
        while chunk := stream.read1(1 << 16):  # type: ignore[attr-defined]
            self.lines += chunk.count(b"\n")
            self._tail = (self._tail + chunk)[-4096:]

    def settled_lines(self, quiet: float = 0.25, timeout: float = 10.0) -> int:
        """The count of lines written so far, once the drain has caught up with the server."""
        deadline = time.perf_counter() + timeout
        seen = self.lines
        while time.perf_counter() < deadline:
            time.sleep(quiet)
            if self.lines == seen:
                return seen
            seen = self.lines
        return seen

    def tail(self) -> str:
        return self._tail.decode(errors="replace")

    def wait_answered(
        self, timeout: float = 30.0, poll: float = 0.002, get: str | None = None
    ) -> float:
        """Seconds from spawn until a CloudEvent POST (or a GET of the path `get`) got a
        non-5xx answer."""
        assert self.process is not None
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.target.label} exited:\n{self.tail()}")
            try:
                if get is None:
                    status, _, _ = post_event(self.port, timeout=timeout)
                else:
                    status = get_status(self.port, get, timeout=timeout)
            except (ConnectionError, http.client.HTTPException, OSError):
                time.sleep(poll)
                continue
            if status < 500:
                self.answered_status = status
                return time.perf_counter() - self.started_at
            time.sleep(poll)
        raise RuntimeError(f"{self.target.label} not answering after {timeout}s:\n{self.tail()}")

    def cpu_seconds(self) -> float:
        """User + system CPU of the server's whole process tree so far (gunicorn forks)."""
        import psutil

        assert self.process is not None
        total = 0.0
        with contextlib.suppress(psutil.Error):
            parent = psutil.Process(self.process.pid)
            for proc in [parent, *parent.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    times = proc.cpu_times()
                    total += times.user + times.system
        return total

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        if self._drain is not None:
            self._drain.join(5)
        self.process = None


@contextlib.contextmanager
def running(target: Target, cores: Cores, env: dict[str, str] | None = None) -> Iterator[Server]:
    server = Server(target, cores, env=dict(env or {}))
    server.start()
    try:
        server.wait_answered()
        yield server
    finally:
        server.stop()


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "-"


def versions() -> dict[str, str]:
    """Versions of everything measured: this environment's and functions-framework's."""
    found = {"python": platform.python_version()}
    for name in (
        "fnkit",
        "uvicorn",
        "uvloop",
        "httptools",
        "cloudevents",
        "fastapi",
        "starlette",
        "prometheus-client",
        "orjson",
        "pydantic",
    ):
        found[name] = _version(name)
    if ff_python().exists():
        script = (
            "import json, importlib.metadata as m; print(json.dumps({n: m.version(n) for n "
            "in ['functions-framework', 'flask', 'gunicorn', 'cloudevents', 'starlette', "
            "'uvicorn', 'uvicorn-worker']}))"
        )
        out = subprocess.run(
            [str(ff_python()), "-c", script], capture_output=True, text=True, check=True
        ).stdout
        found.update({f"{k} (ff env)" if k in found else k: v for k, v in json.loads(out).items()})
    wrk = shutil.which("wrk")
    if wrk:
        out = subprocess.run([wrk, "--version"], capture_output=True, text=True).stdout
        found["wrk"] = out.split()[1] if out.split()[:1] == ["wrk"] else out.strip()[:40]
    return found


def machine() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def header(
    title: str, cores: Cores, load_before: str, load_after: str, found: dict[str, str]
) -> list[str]:
    """The Markdown preamble every result file starts with."""
    facts = machine()
    lines = [
        f"# {title}",
        "",
        f"Measured {facts['date']} by `python -m bench` (bench/). Do not edit by hand.",
        "",
        f"- Hardware: {facts['cpu']}, {facts['cores']} cores; Linux {facts['kernel']}",
        f"- Pinning: {cores.describe()}",
        f"- Load average (1/5/15 min) before: {load_before}; after: {load_after} "
        "(the machine is shared; each figure is the median of repeated runs, interleaved)",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in found.items()),
        "",
    ]
    return lines


def write_json(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def pin_self(cores: Cores) -> None:
    """Keep the harness off the server's core."""
    if cores.load is not None:
        os.sched_setaffinity(0, {cores.load})
