"""`python -m devplane.dev`: the whole platform as local processes, for `make dev`.

Starts MongoDB and MinIO (reusing either when its port is already taken), devplane on 8100,
and every enabled function of the chart's values whose module is installed, each on its
`localPort` with K_SINK pointing at devplane. When minio-source is installed, MinIO is started
with minio-source's webhook as a notification target (as compose does) and minio-source's
setup command creates the buckets and the uploads bucket's notification. Their logs are
interleaved on stdout behind a coloured name; Ctrl-C stops the functions and devplane, then
the servers it started.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from fnkit import FunctionSettings

from devplane.config import ConfigError, FunctionSpec, find_chart_values, load_config
from devplane.servers import (
    MINIO_ROOT_PASSWORD,
    MINIO_ROOT_USER,
    ServerProcess,
    ServerUnavailable,
    interrupt_on_stop_signals,
    minio_server,
    mongo_server,
    port_open,
)

DEVPLANE_PORT = 8100
MONGO_PORT = 27017
MINIO_PORT = 9000
STOP_SECONDS = 30.0  # fnkit-serve's graceful shutdown is 25 s
MINIO_SOURCE = "minio-source"
MINIO_SETUP_WAIT_SECONDS = 60
_COLOURS = (36, 33, 35, 32, 34, 91, 92, 93, 94, 95, 96)


@dataclass
class Child:
    """A service run as a child process, its output copied to ours behind a prefix."""

    name: str
    argv: list[str]
    env: dict[str, str]
    prefix: str = ""
    oneshot: bool = False
    process: subprocess.Popen[bytes] | None = None
    reported: bool = False
    _pump: threading.Thread | None = field(default=None, repr=False)

    def start(self, lock: threading.Lock) -> None:
        self.process = subprocess.Popen(
            self.argv,
            env={**os.environ, **self.env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        self._pump = threading.Thread(
            target=_copy_lines, args=(self.process.stdout, self.prefix, lock), daemon=True
        )
        self._pump.start()

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)

    def wait(self, deadline: float) -> None:
        """Wait for the process to end; kill it once `deadline` (monotonic) has passed."""
        if self.process is None:
            return
        try:
            self.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        if self._pump is not None:
            self._pump.join(2)


def _copy_lines(stream: IO[bytes], prefix: str, lock: threading.Lock) -> None:
    for raw in stream:
        line = raw.decode(errors="replace").rstrip()
        with lock:
            sys.stdout.write(f"{prefix}{line}\n")
            sys.stdout.flush()


def _prefixes(names: Sequence[str], colour: bool) -> Iterator[str]:
    width = max(len(name) for name in names)
    for name, code in zip(names, itertools.cycle(_COLOURS), strict=False):
        label = f"{name:<{width}} |"
        yield f"\033[{code}m{label}\033[0m " if colour else f"{label} "


def _importable(module: str) -> bool:
    """Whether `package.module:app` can be imported, without importing it here."""
    try:
        return importlib.util.find_spec(module.split(":", 1)[0]) is not None
    except (ModuleNotFoundError, ValueError):
        return False


def _serve(module: str, port: int) -> list[str]:
    return [sys.executable, "-m", "fnkit.serve", module, "--host", "127.0.0.1", "--port", str(port)]


def _server(kind: str, port: int, root: Path, env: dict[str, str]) -> ServerProcess | None:
    """A MongoDB or MinIO server to start, or None when something already listens there."""
    if port_open(port):
        print(f"{kind}: something already listens on 127.0.0.1:{port}; using it", flush=True)
        if env:
            print(
                f"{kind}: WARNING: a server not started here keeps its own configuration; "
                f"{', '.join(sorted(env))} cannot be applied to it, so uploads reach "
                "minio-source only if it was started with them",
                flush=True,
            )
        return None
    return mongo_server(root, port) if kind == "mongodb" else minio_server(root, port, env)


@dataclass(frozen=True)
class Webhook:
    """minio-source as MinIO's webhook target: MinIO's variables and minio-source's own."""

    minio_env: dict[str, str]
    source_env: dict[str, str]


def _env_name(settings: type[FunctionSettings], field_name: str) -> str:
    """The environment variable of a settings field, failing loudly when the field is gone."""
    if field_name not in settings.model_fields:
        raise RuntimeError(f"{settings.__module__}.{settings.__name__} has no {field_name!r}")
    return str(settings.model_config.get("env_prefix", "")) + field_name.upper()


def _webhook(spec: FunctionSpec | None, root: Path) -> Webhook | None:
    """MinIO's notification target for minio-source, when minio-source will run here."""
    if spec is None or not spec.enabled or spec.local_port is None or not spec.module:
        return None
    if not _importable(spec.module):
        return None
    # Imported only here: minio-source is an optional member of the workspace.
    from minio_source.config import Settings

    # The variables a developer set (a token, a target id) win, as in compose's .env.
    settings = Settings(environment="dev")
    target = settings.notify_target_id
    token = settings.webhook_auth_token.get_secret_value()
    return Webhook(
        minio_env={
            f"MINIO_NOTIFY_WEBHOOK_ENABLE_{target}": "on",
            f"MINIO_NOTIFY_WEBHOOK_ENDPOINT_{target}": (
                f"http://127.0.0.1:{spec.local_port}/minio/webhook"
            ),
            f"MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_{target}": token,
            # Notifications wait here while minio-source is down, and survive a restart.
            f"MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_{target}": str(root / "minio-webhook-queue"),
        },
        source_env={
            _env_name(Settings, "webhook_auth_token"): token,
            _env_name(Settings, "notify_target_id"): target,
        },
    )


def _minio_setup(webhook: Webhook, env: dict[str, str]) -> Child:
    argv = [sys.executable, "-m", "minio_source.setup", "--wait", str(MINIO_SETUP_WAIT_SECONDS)]
    return Child("minio-setup", argv, {**env, **webhook.source_env}, oneshot=True)


def _report_exit(child: Child) -> None:
    assert child.process is not None
    code = child.process.returncode
    if not child.oneshot:
        print(f"{child.name}: exited with code {code}", flush=True)
    elif code == 0:
        print(f"{child.name}: done, buckets and the uploads notification are set", flush=True)
    else:
        print(
            f"{child.name}: FAILED with code {code}; uploads will not reach minio-source "
            "(see its lines above)",
            flush=True,
        )


def _functions(specs: Sequence[FunctionSpec], only: set[str]) -> list[FunctionSpec]:
    chosen = []
    for spec in specs:
        if only and spec.name not in only:
            continue
        if not spec.enabled:
            print(f"{spec.name}: disabled in values, not started", flush=True)
        elif not spec.module or spec.local_port is None:
            print(f"{spec.name}: no module or localPort in values, not started", flush=True)
        elif not _importable(spec.module):
            print(f"{spec.name}: {spec.module} is not installed (yet), not started", flush=True)
        elif port_open(spec.local_port):
            print(f"{spec.name}: port {spec.local_port} is taken, not started", flush=True)
        else:
            chosen.append(spec)
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="devplane dev",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data", type=Path, default=Path(".dev"), help="data and server logs (default: .dev)"
    )
    parser.add_argument(
        "--values",
        type=Path,
        action="append",
        default=[],
        help="extra values file merged over the chart's (repeatable)",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="start only this function (repeatable); servers and devplane always",
    )
    parser.add_argument("--devplane-port", type=int, default=DEVPLANE_PORT)
    parser.add_argument("--mongo-port", type=int, default=MONGO_PORT)
    parser.add_argument("--minio-port", type=int, default=MINIO_PORT)
    args = parser.parse_args(argv)
    root = args.data.resolve()
    root.mkdir(parents=True, exist_ok=True)
    values = [find_chart_values(), *(path.resolve() for path in args.values)]
    try:
        config = load_config(values)
    except ConfigError as exc:
        print(f"devplane: invalid routing values: {exc}", file=sys.stderr)
        return 2

    sink = f"http://127.0.0.1:{args.devplane_port}"
    env = {
        "ENVIRONMENT": "dev",
        "K_SINK": sink,
        "MONGO_URL": f"mongodb://127.0.0.1:{args.mongo_port}/",
        "MINIO_ENDPOINT": f"127.0.0.1:{args.minio_port}",
        "MINIO_ACCESS_KEY": MINIO_ROOT_USER,
        "MINIO_SECRET_KEY": MINIO_ROOT_PASSWORD,
    }
    wanted = not args.only or MINIO_SOURCE in args.only
    webhook = _webhook(config.functions.get(MINIO_SOURCE), root) if wanted else None
    children = [] if webhook is None else [_minio_setup(webhook, env)]
    children.append(
        Child(
            "devplane",
            _serve("devplane.main:app", args.devplane_port),
            {
                **env,
                "DEVPLANE_URL": sink,
                "DEVPLANE_SUBSCRIBER_URL": "http://127.0.0.1:{port}",
                "DEVPLANE_CHART_VALUES": str(values[0]),
                "DEVPLANE_EXTRA_VALUES": ",".join(str(path) for path in values[1:]),
            },
        )
    )
    for spec in _functions(list(config.functions.values()), set(args.only)):
        assert spec.module is not None and spec.local_port is not None
        own = webhook.source_env if webhook is not None and spec.name == MINIO_SOURCE else {}
        children.append(Child(spec.name, _serve(spec.module, spec.local_port), {**env, **own}))
    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    for child, prefix in zip(children, _prefixes([c.name for c in children], colour), strict=True):
        child.prefix = prefix

    interrupt_on_stop_signals()
    servers: list[ServerProcess] = []
    lock = threading.Lock()
    try:
        minio_env = {} if webhook is None else webhook.minio_env
        for kind, port, server_env in (
            ("mongodb", args.mongo_port, {}),
            ("minio", args.minio_port, minio_env),
        ):
            server = _server(kind, port, root, server_env)
            if server is not None:
                server.start()
                servers.append(server)
                print(f"{kind}: ready on 127.0.0.1:{port} (log {server.log_path})", flush=True)
        # The setup command goes first: it waits for MinIO while the functions start.
        for child in children:
            child.start(lock)
        port_of = {s.name: s.local_port for s in config.functions.values()}
        served = [c for c in children if not c.oneshot]
        print(
            "started: "
            + ", ".join(f"{c.name} :{port_of.get(c.name) or args.devplane_port}" for c in served)
            + "".join(f", {c.name} (one-shot)" for c in children if c.oneshot)
            + "; Ctrl-C stops everything",
            flush=True,
        )
        while True:
            time.sleep(0.5)
            for child in children:
                if child.process and child.process.poll() is not None and not child.reported:
                    child.reported = True
                    _report_exit(child)
    except ServerUnavailable as exc:
        print(f"devplane: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
    finally:
        # A second Ctrl-C must not cut the clean-up short and leave orphans behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for child in children:
            child.terminate()
        deadline = time.monotonic() + STOP_SECONDS
        for child in children:
            child.wait(deadline)
        for server in reversed(servers):
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
