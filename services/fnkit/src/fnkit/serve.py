"""`fnkit-serve module:app`: the one entrypoint of every function, locally and in images.

The port comes from `PORT` (Knative sets it), the host from `HOST`. SIGTERM stops accepting
connections, lets in-flight requests finish for up to `SHUTDOWN_GRACE_SECONDS`, then runs the
app's shutdown (clients closed).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from types import FrameType

import uvicorn


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="fnkit-serve", description=__doc__)
    parser.add_argument("app", help="the ASGI app, as module:attribute")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    parser.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"))
    args = parser.parse_args(argv)
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, _stopped)
    uvicorn.run(
        args.app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,  # fnkit logs one line per invocation itself
        log_config=None,
        server_header=False,
        # No function reads the client's address: rewriting it from X-Forwarded-* (which
        # Knative's queue-proxy sets) would cost every request and serve nothing.
        proxy_headers=False,
        timeout_graceful_shutdown=int(os.environ.get("SHUTDOWN_GRACE_SECONDS", "25")),
        timeout_keep_alive=int(os.environ.get("KEEP_ALIVE_SECONDS", "30")),
    )


def _stopped(signum: int, frame: FrameType | None) -> None:
    """Exit 0: uvicorn re-raises the stop signal after its graceful shutdown, which is a clean
    stop, not a death by signal (exit 143 reads as an error to Kubernetes and supervisors)."""
    sys.exit(0)


if __name__ == "__main__":
    main()
