"""The `playbook` command: its global options and the dispatch to each command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace

from playbook_cli import dlq, jobs, orders, send, tail, upload
from playbook_cli.cloudevent import EventError
from playbook_cli.endpoints import ApiError, Endpoints, Unreachable
from playbook_cli.output import Output

EPILOG = """\
where the platform is (options, else environment variables):
  make dev, docker compose   nothing to set: every function on 127.0.0.1:8100-8110,
                             MinIO on 127.0.0.1:9000 (compose: set PLAYBOOK_MINIO_ACCESS_KEY
                             and PLAYBOOK_MINIO_SECRET_KEY to .env's MinIO credentials)
  a cluster                  port-forward the Knative gateway, the broker ingress and MinIO:
      kubectl -n kourier-system port-forward svc/kourier-internal 18080:80 &
      kubectl -n knative-eventing port-forward svc/broker-ingress 18081:80 &
      kubectl -n knative-playbook port-forward svc/knative-playbook-minio 19000:9000 &
      export PLAYBOOK_URL=http://127.0.0.1:18080 \\
             PLAYBOOK_BROKER=http://127.0.0.1:18081/knative-playbook/default \\
             PLAYBOOK_MINIO=127.0.0.1:19000
    (`events tail` needs devplane: it exists under make dev and compose only)
"""


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="playbook",
        description="Send events, upload images, follow orders and bulk jobs, inspect and "
        "replay dead letters, and watch the event log of a knative-playbook platform.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    root.add_argument(
        "--url",
        help="functions' URL: a template with {port} and {service} (default "
        "http://127.0.0.1:{port}), or one gateway URL, routed by Host header [PLAYBOOK_URL]",
    )
    root.add_argument(
        "--broker", help="where events are sent (default: devplane's URL) [PLAYBOOK_BROKER]"
    )
    root.add_argument(
        "--namespace",
        help="the release namespace, for Host headers behind a gateway "
        "(default knative-playbook) [PLAYBOOK_NAMESPACE]",
    )
    root.add_argument("--minio", help="MinIO's host:port (default 127.0.0.1:9000) [PLAYBOOK_MINIO]")
    root.add_argument(
        "--timeout", type=float, default=30.0, help="seconds per HTTP request (%(default)s)"
    )
    root.add_argument(
        "--json", action="store_true", help="print results as JSON, one document a line"
    )
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (send, upload, orders, jobs, dlq, tail):
        module.add_parser(commands)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    endpoints = Endpoints.from_env()
    overrides = {
        name: value
        for name, value in (
            ("url", args.url),
            ("broker", args.broker),
            ("namespace", args.namespace),
            ("minio", args.minio),
        )
        if value
    }
    endpoints = replace(endpoints, timeout=args.timeout, **overrides)
    out = Output(json_mode=args.json)
    try:
        code: int = args.run(args, endpoints, out)
    except (Unreachable, ApiError, EventError) as exc:
        print(f"playbook {args.command}: {exc}", file=sys.stderr)
        return 3 if isinstance(exc, Unreachable) else 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
