"""CPU cost of one CloudEvent invocation inside the app, without HTTP: a profiling aid.

Drives the ASGI app in-process (lifespan, then N invocations with an in-memory receive and
send) and reports CPU microseconds per invocation for fnkit's echo and for the bare ASGI
floor. CPU time, not wall time, so that it stays usable on a shared machine. With
`--profile`, pyinstrument shows where fnkit's time goes. Not a published figure: the
runtime benchmark (HTTP, wrk) is.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

from bench.common import EVENT_BODY, EVENT_HEADERS

App = Any


def _scope() -> dict[str, Any]:
    headers = [(k.lower().encode(), v.encode()) for k, v in EVENT_HEADERS.items()]
    headers.append((b"content-length", str(len(EVENT_BODY)).encode()))
    return {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": headers,
        "http_version": "1.1",
        "scheme": "http",
        "query_string": b"",
        "root_path": "",
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8080),
    }


async def _lifespan(app: App) -> asyncio.Task[None]:
    """Run the app's lifespan start-up; the returned task finishes it on shutdown."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    started = asyncio.Event()
    await inbox.put({"type": "lifespan.startup"})

    async def send(message: dict[str, Any]) -> None:
        if message["type"].startswith("lifespan.startup"):
            started.set()

    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send)
    )
    await started.wait()
    return task


async def _invocations(app: App, count: int) -> float:
    scope = _scope()
    request = {"type": "http.request", "body": EVENT_BODY, "more_body": False}
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return request

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    for _ in range(200):  # warm caches, metric children, the first-invocation path
        await app(scope, receive, send)
    started = time.process_time()
    for _ in range(count):
        await app(scope, receive, send)
    elapsed = time.process_time() - started
    if set(statuses) != {200}:
        raise RuntimeError(f"unexpected statuses {set(statuses)}")
    return elapsed / count * 1e6


@contextlib.contextmanager
def _stdout_to_devnull() -> Iterator[None]:
    """Log lines still get written (a syscall each, as to a pipe), just not shown."""
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(devnull)
        os.close(saved)


async def measure(app: App, count: int, lifespan: bool) -> float:
    task = await _lifespan(app) if lifespan else None
    try:
        return await _invocations(app, count)
    finally:
        if task is not None:
            task.cancel()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hotpath", description=__doc__)
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="pyinstrument fnkit's echo")
    parser.add_argument("--all", action="store_true", help="with --profile: library frames too")
    args = parser.parse_args(argv)
    os.environ.setdefault("ENVIRONMENT", "dev")
    import uvloop
    from fnkit.echo import app as echo

    from bench.baselines.bare_asgi import app as bare

    results: dict[str, list[float]] = {"fnkit echo": [], "bare ASGI": []}
    with _stdout_to_devnull():
        for _ in range(args.repeat):
            results["fnkit echo"].append(uvloop.run(measure(echo, args.count, True)))
            results["bare ASGI"].append(uvloop.run(measure(bare, args.count, False)))
        if args.profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0002)
            profiler.start()
            uvloop.run(measure(echo, args.count, True))
            profiler.stop()
    for name, values in results.items():
        print(
            f"{name:<12} {min(values):7.1f} us CPU per invocation (best of {args.repeat}; "
            f"all: {', '.join(f'{v:.1f}' for v in values)})"
        )
    if args.profile:
        print(profiler.output_text(unicode=False, color=False, show_all=args.all))


if __name__ == "__main__":
    main()
