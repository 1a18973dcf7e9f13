"""`playbook order place | show`: place an order with orders-api and follow its saga."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from playbook_cli.cloudevent import new_traceparent, trace_id
from playbook_cli.endpoints import Endpoints, checked, request
from playbook_cli.output import Output, pretty, short_time

SERVICE = "orders-api"
FINAL = frozenset({"COMPLETED", "FAILED"})


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "order",
        help="place an order and follow its saga",
        description="Orders of the saga pattern (orders-api, order-steps, workflow).",
    )
    sub = parser.add_subparsers(dest="order_command", required=True, metavar="COMMAND")
    place = sub.add_parser(
        "place",
        help="place an order; with --follow, print each saga step until it ends",
        description="POST the order in FILE ('-': standard input) to orders-api. With "
        "--follow, print each step of its saga as it happens until the order completes or "
        "fails (exit status 1 when it fails).",
    )
    place.add_argument("file", help="the order as JSON ('-': standard input)")
    _follow_options(place)
    place.set_defaults(run=run_place)
    show = sub.add_parser(
        "show",
        help="an order's state and saga steps",
        description="Show one order; with --follow, until it ends.",
    )
    show.add_argument("id", help="the order id")
    _follow_options(show)
    show.set_defaults(run=run_show)


def _follow_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--follow", action="store_true", help="follow until it ends")
    parser.add_argument(
        "--wait", type=float, default=300.0, help="longest follow, in seconds (%(default)s)"
    )
    parser.add_argument(
        "--interval", type=float, default=0.5, help="seconds between polls (%(default)s)"
    )


def run_place(args: argparse.Namespace, endpoints: Endpoints, out: Output) -> int:
    text = sys.stdin.read() if args.file == "-" else _read(args.file)
    try:
        order = json.loads(text)
    except ValueError as exc:
        raise SystemExit(f"playbook order place: {args.file} is not JSON: {exc}") from None
    with endpoints.client(SERVICE) as client:
        traceparent = new_traceparent()
        placed = checked(
            request(client, "POST", "/orders", json=order, headers={"traceparent": traceparent})
        )
        order_id = str(placed["id"])
        out.line(
            f"order {order_id} placed: {placed.get('status', '?')}, trace {trace_id(traceparent)}"
        )
        if not args.follow:
            out.record(placed, "")
            return 0
        return _follow(client, order_id, args, out)


def run_show(args: argparse.Namespace, endpoints: Endpoints, out: Output) -> int:
    with endpoints.client(SERVICE) as client:
        if args.follow:
            return _follow(client, args.id, args, out)
        order = checked(request(client, "GET", f"/orders/{quote(args.id, safe='')}"))
    out.record(order, pretty(order))
    return 0


def _follow(client: Any, order_id: str, args: argparse.Namespace, out: Output) -> int:
    deadline = time.monotonic() + args.wait
    printed = 0
    status = None
    while True:
        order = checked(request(client, "GET", f"/orders/{quote(order_id, safe='')}"))
        steps = steps_of(order)
        for step in steps[printed:]:
            out.record({"order_id": order_id, "step": step}, f"  {describe_step(step)}")
        printed = len(steps)
        if order.get("status") != status:
            status = order.get("status")
            out.line(f"order {order_id}: {status}")
        if status in FINAL:
            if status == "FAILED":
                out.line(f"  failed at {order.get('failed_step')}: {order.get('reason')}")
                if order.get("compensations"):
                    out.line(f"  compensated: {', '.join(order['compensations'])}")
            out.record(order, "")
            return 0 if status == "COMPLETED" else 1
        if time.monotonic() > deadline:
            out.note(f"order {order_id} still {status} after {args.wait:g}s")
            return 1
        time.sleep(args.interval)


def steps_of(order: dict[str, Any]) -> list[dict[str, Any]]:
    """The order's saga history, oldest first."""
    history: list[dict[str, Any]] = order.get("history") or []
    return history


def describe_step(step: dict[str, Any]) -> str:
    parts = (short_time(step.get("at")), step.get("step"), step.get("outcome"), step.get("detail"))
    return "  ".join(str(p) for p in parts if p)


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise SystemExit(f"playbook: cannot read {path}: {exc.strerror}") from None
