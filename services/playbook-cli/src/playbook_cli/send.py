"""`playbook send`: one CloudEvent to the broker or a function, and whatever it answers."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import httpx

from playbook_cli.cloudevent import Event, new_traceparent, read_event, trace_id
from playbook_cli.endpoints import Endpoints, request
from playbook_cli.output import Output, pretty

DEFAULT_SOURCE = "/playbook-cli"


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "send",
        help="send a CloudEvent to the broker or a function; print any reply",
        description="Send one CloudEvent (binary mode unless --structured) and print the "
        "answer: the status, and the reply event when the target replies with one. A new "
        "trace is started unless --traceparent is given; its id is printed, to find the "
        "event in every function's logs.",
    )
    parser.add_argument("type", help="the event type, e.g. io.knative-playbook.item.requested.v1")
    parser.add_argument("--source", default=DEFAULT_SOURCE, help="the event source (%(default)s)")
    parser.add_argument(
        "-d",
        "--data",
        metavar="FILE",
        help="file holding the event data ('-': standard input); no data when left out",
    )
    parser.add_argument(
        "--content-type",
        default="application/json",
        help="datacontenttype of the data (%(default)s; checked to be JSON then)",
    )
    parser.add_argument("--id", help="the event id (default: a new UUID)")
    parser.add_argument("--subject", help="the event subject")
    parser.add_argument(
        "-e",
        "--extension",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an extension attribute, e.g. bucket=uploads (repeatable)",
    )
    parser.add_argument("--traceparent", help="continue this W3C trace instead of a new one")
    parser.add_argument(
        "--to",
        default="broker",
        metavar="TARGET",
        help="'broker' (default), a function's name (e.g. image-processor) or a URL",
    )
    parser.add_argument(
        "--structured", action="store_true", help="structured mode: one JSON document"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, endpoints: Endpoints, out: Output) -> int:
    extensions: dict[str, str] = {}
    for pair in args.extension:
        name, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"playbook send: --extension {pair!r} is not NAME=VALUE")
        extensions[name.strip()] = value
    traceparent = args.traceparent or extensions.pop("traceparent", None) or new_traceparent()
    data = _read_data(args.data)
    event = Event(
        type=args.type,
        source=args.source,
        data=data,
        content_type=args.content_type if data is not None else None,
        subject=args.subject,
        extensions={**extensions, "traceparent": traceparent},
        **({"id": args.id} if args.id else {}),
    )
    url, headers = endpoints.target(args.to)
    extra, body = event.structured() if args.structured else event.binary()
    with httpx.Client(timeout=endpoints.timeout) as client:
        response = request(client, "POST", url, headers={**headers, **extra}, content=body)
    reply = read_event(response.headers, response.content)
    result: dict[str, Any] = {
        "id": event.id,
        "type": event.type,
        "url": url,
        "mode": "structured" if args.structured else "binary",
        "trace_id": trace_id(traceparent),
        "status": response.status_code,
        "reply": reply.view() if reply else None,
    }
    if reply is None and response.content:
        result["body"] = _body(response)
    mode = result["mode"]
    out.line(f"sent {event.type} id={event.id} to {url} ({mode}), trace {result['trace_id']}")
    out.line(f"HTTP {response.status_code} {response.reason_phrase}")
    if reply is not None:
        attributes = reply.attributes
        out.line(f"reply {attributes.get('type')} id={attributes.get('id')}")
        for name in sorted(attributes):
            if name not in ("type", "id", "specversion"):
                out.line(f"  {name}: {attributes[name]}")
        if reply.data is not None:
            out.line(pretty(reply.data))
    elif "body" in result:
        out.line(pretty(result["body"]))
    if out.json_mode:
        out.record(result)
    return 0 if response.is_success else 1


def _read_data(path: str | None) -> bytes | None:
    if path is None:
        return None
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SystemExit(f"playbook send: cannot read {path}: {exc.strerror}") from None


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text
