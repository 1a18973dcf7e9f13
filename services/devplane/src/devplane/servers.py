"""Real MongoDB-protocol and MinIO servers as local processes, for tests and `make dev`.

Where a Docker engine can run `mongo:7` and `minio/minio`, testcontainers would do; on the
project's build machines no image can be pulled, so the servers are binaries started as
processes: `mongod` when it is on PATH, otherwise FerretDB (MongoDB wire protocol, SQLite
backend), and the MinIO server, both built by `scripts/install-test-servers` into a versioned
cache. Each server gets a free port (or a fixed one) and its own data directory, and can be
stopped, killed and started again on the same port and data, for fault-injection tests.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, NoReturn

CACHE_BIN = (
    Path(os.environ.get("KNATIVE_PLAYBOOK_CACHE", Path.home() / ".cache" / "knative-playbook"))
    / "bin"
)

MINIO_ROOT_USER = "minioadmin"
MINIO_ROOT_PASSWORD = "minioadmin"  # noqa: S105 - local development server only


class ServerUnavailable(RuntimeError):
    """A server binary is missing or the server would not start."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_binary(name: str) -> Path | None:
    """The binary from PATH, else from the install script's cache."""
    found = shutil.which(name)
    if found:
        return Path(found)
    cached = CACHE_BIN / name
    return cached if cached.exists() else None


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class ServerProcess:
    """A server run as a child process, restartable on the same port and data directory."""

    name: str
    port: int
    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        return port_open(self.port)

    def start(self, timeout: float = 60.0) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_path or self.data_dir.parent / f"{self.name}-{self.port}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(
            self.command(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerUnavailable(
                    f"{self.name} exited with {self.process.returncode}; see {self.log_path}:\n"
                    + self.log_tail()
                )
            if self.ready():
                return
            time.sleep(0.1)
        self.stop()
        raise ServerUnavailable(f"{self.name} not ready on port {self.port} after {timeout}s")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        """Stop the server (SIGTERM: graceful; SIGKILL: a crash)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        deadline = time.monotonic() + 10
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class MongoServer(ServerProcess):
    binary: Path = Path("ferretdb")

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    @property
    def flavour(self) -> str:
        return "mongod" if self.binary.name.startswith("mongod") else "ferretdb"

    def command(self) -> list[str]:
        if self.flavour == "mongod":
            return [
                str(self.binary),
                "--bind_ip",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dbpath",
                str(self.data_dir),
                "--quiet",
            ]
        return [
            str(self.binary),
            "--handler=sqlite",
            f"--sqlite-url=file:{self.data_dir}/",
            f"--listen-addr=127.0.0.1:{self.port}",
            "--telemetry=disable",
            "--log-level=warn",
            "--debug-addr=-",
        ]


@dataclass
class MinioServer(ServerProcess):
    binary: Path = Path("minio")
    access_key: str = MINIO_ROOT_USER
    secret_key: str = MINIO_ROOT_PASSWORD

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    def command(self) -> list[str]:
        return [
            str(self.binary),
            "server",
            str(self.data_dir),
            "--address",
            f"127.0.0.1:{self.port}",
            "--console-address",
            f"127.0.0.1:{free_port()}",
            "--quiet",
        ]

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/minio/health/live", timeout=1) as r:  # noqa: S310
                return bool(r.status == 200)
        except OSError:
            return False

    def start(self, timeout: float = 60.0) -> None:
        self.env = {
            "MINIO_ROOT_USER": self.access_key,
            "MINIO_ROOT_PASSWORD": self.secret_key,
            "MINIO_BROWSER": "off",
            "MINIO_UPDATE": "off",
            **self.env,
        }
        super().start(timeout)


def mongo_server(root: Path, port: int | None = None) -> MongoServer:
    """A MongoDB-protocol server: `mongod` if installed, else FerretDB from the cache."""
    binary = find_binary("mongod") or find_binary("ferretdb")
    if binary is None:
        raise ServerUnavailable(
            "no MongoDB-protocol server: install mongod, or run scripts/install-test-servers"
        )
    return MongoServer("mongodb", port or free_port(), root / "mongo-data", binary=binary)


def minio_server(
    root: Path, port: int | None = None, env: dict[str, str] | None = None
) -> MinioServer:
    binary = find_binary("minio")
    if binary is None:
        raise ServerUnavailable("no MinIO server: run scripts/install-test-servers")
    return MinioServer(
        "minio", port or free_port(), root / "minio-data", env=dict(env or {}), binary=binary
    )


def main(argv: list[str] | None = None) -> None:
    """`devplane-servers`: run MongoDB and MinIO in the foreground until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="devplane servers", description=main.__doc__)
    parser.add_argument("--data", type=Path, default=Path(".dev"))
    parser.add_argument("--mongo-port", type=int, default=27017)
    parser.add_argument("--minio-port", type=int, default=9000)
    args = parser.parse_args(argv)
    root = args.data.resolve()
    root.mkdir(parents=True, exist_ok=True)
    servers: list[ServerProcess] = [
        mongo_server(root, args.mongo_port),
        minio_server(root, args.minio_port),
    ]
    # Ctrl-C or SIGTERM, even while the servers start, stops them before this exits (with
    # sigwait on unblocked signals, SIGTERM would end this process and orphan the servers).
    interrupt_on_stop_signals()
    try:
        for server in servers:
            server.start()
            print(
                f"{server.name} ready on 127.0.0.1:{server.port} (log {server.log_path})",
                flush=True,
            )
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        # A second Ctrl-C or SIGTERM must not cut the clean-up short and orphan them.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for server in reversed(servers):
            server.stop()


def interrupt_on_stop_signals() -> None:
    """Make Ctrl-C and SIGTERM raise KeyboardInterrupt, so a command's clean-up runs on either.

    SIGINT's handler is installed even when the process was started with SIGINT ignored, as a
    shell without job control (a CI runner's, nohup's) starts background commands: Python would
    otherwise keep ignoring Ctrl-C.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


@dataclass
class FunctionProcess(ServerProcess):
    """A function (`fnkit-serve module:app`) as a process: for `make dev` and end-to-end tests."""

    module: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "fnkit.serve",
            self.module,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health/liveness", timeout=1) as r:  # noqa: S310
                return bool(r.status == 200)
        except OSError:
            return False

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait for /health/readiness (dependencies reachable, start-up hooks done)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/health/readiness", timeout=2) as r:  # noqa: S310
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise ServerUnavailable(f"{self.name} not ready after {timeout}s:\n{self.log_tail()}")


if __name__ == "__main__":
    main()
