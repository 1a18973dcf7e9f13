"""`playbook events tail`: devplane's event log, as it grows.

devplane numbers every event it receives (`seq`); following the log is asking for what came
after the last number seen, so nothing is printed twice and nothing is skipped while it stays
in devplane's (bounded) log. With --follow, an event is printed once its deliveries have
settled (delivered, dead-lettered, dropped), or after --settle seconds, so that each line says
where the event went.
"""

from __future__ import annotations

import argparse
import fnmatch
import time
from typing import Any

import httpx

from playbook_cli.endpoints import Endpoints, checked, request
from playbook_cli.output import Output, short_time

SERVICE = "devplane"
MAX_LIMIT = 10_000
_UNSETTLED = frozenset({"pending", "retrying"})


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "events",
        help="devplane's event log",
        description="devplane's event log (make dev, docker compose).",
    )
    sub = parser.add_subparsers(dest="events_command", required=True, metavar="COMMAND")
    tail = sub.add_parser(
        "tail",
        help="print the latest events; with -f, keep printing new ones",
        description="Print the latest events of devplane's log, oldest first, each with "
        "where it was delivered; with --follow, keep printing new ones until Ctrl-C.",
    )
    tail.add_argument(
        "--type",
        action="append",
        default=[],
        help="only this event type; shell-style patterns work, e.g. '*.order.*' (repeatable)",
    )
    tail.add_argument("--source", help="only this exact event source")
    tail.add_argument(
        "-n", "--lines", type=int, default=10, help="how many of the latest to print first"
    )
    tail.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    tail.add_argument(
        "--interval", type=float, default=0.5, help="seconds between polls (%(default)s)"
    )
    tail.add_argument(
        "--settle",
        type=float,
        default=3.0,
        help="with -f, seconds to wait for an event's deliveries to finish before printing "
        "it anyway (%(default)s; 0: print at once)",
    )
    tail.add_argument(
        "--for",
        dest="duration",
        type=float,
        metavar="SECONDS",
        help="with -f, stop after this long (default: until Ctrl-C)",
    )
    tail.set_defaults(run=run_tail)


class Follower:
    """Fetches the log after a cursor, holds events until settled, releases them in order."""

    def __init__(self, client: httpx.Client, args: argparse.Namespace) -> None:
        self.client = client
        exact = [t for t in args.type if not _is_pattern(t)]
        self.patterns: list[str] = [t for t in args.type if _is_pattern(t)]
        # One exact type is filtered by devplane; several, or patterns, here.
        self.server_type = exact[0] if len(exact) == 1 and not self.patterns else None
        self.types = set(exact)
        self.source: str | None = args.source
        self.settle = args.settle
        self.cursor = 0
        self.held: dict[int, tuple[float, dict[str, Any]]] = {}

    def wanted(self, event: dict[str, Any]) -> bool:
        if not self.types and not self.patterns:
            return True
        kind = str(event["type"])
        return kind in self.types or any(fnmatch.fnmatchcase(kind, p) for p in self.patterns)

    def fetch(self, after: int, limit: int = MAX_LIMIT) -> list[dict[str, Any]]:
        """Events after `after`, oldest first."""
        params: dict[str, Any] = {"after": after, "limit": limit}
        if self.server_type:
            params["type"] = self.server_type
        if self.source:
            params["source"] = self.source
        events: list[dict[str, Any]] = checked(
            request(self.client, "GET", "/events", params=params)
        )["events"]
        return list(reversed(events))

    def start(self, lines: int) -> list[dict[str, Any]]:
        """The latest `lines` wanted events; the cursor moves past everything in the log."""
        events = self.fetch(0)
        if events:
            self.cursor = events[-1]["seq"]
        wanted = [e for e in events if self.wanted(e)]
        return wanted[-lines:] if lines > 0 else []

    def poll(self, now: float) -> list[dict[str, Any]]:
        """New events to print, in log order: settled ones, and ones held past --settle."""
        after = min(self.held) - 1 if self.held else self.cursor
        for event in self.fetch(after):
            seq = event["seq"]
            if seq in self.held:
                self.held[seq] = (self.held[seq][0], event)
            elif seq > self.cursor:
                self.cursor = seq
                if self.wanted(event):
                    self.held[seq] = (now, event)
        released = []
        for seq in sorted(self.held):
            first_seen, event = self.held[seq]
            if settled(event) or now - first_seen >= self.settle:
                released.append(event)
                del self.held[seq]
            else:
                break  # keep the log's order: later events wait for this one
        return released

    def flush(self) -> list[dict[str, Any]]:
        remaining = [event for _, (_, event) in sorted(self.held.items())]
        self.held.clear()
        return remaining


def settled(event: dict[str, Any]) -> bool:
    return all(d["outcome"] not in _UNSETTLED for d in event.get("deliveries", []))


def describe(event: dict[str, Any]) -> str:
    deliveries = event.get("deliveries", [])
    where = (
        ", ".join(
            f"{d['subscriber']}:{d['outcome']}"
            + (f"x{d['attempts']}" if d.get("attempts", 1) > 1 else "")
            + (f"({d['status']})" if d.get("status") and d["outcome"] != "delivered" else "")
            for d in deliveries
        )
        or "no subscriber"
    )
    parts = [
        short_time(event.get("received_at")),
        event["type"],
        f"id={event['id']}",
        f"source={event['source']}",
    ]
    if event.get("subject"):
        parts.append(f"subject={event['subject']}")
    parts.append(f"-> {where}")
    if event.get("trace_id"):
        parts.append(f"trace={event['trace_id']}")
    return "  ".join(parts)


def run_tail(args: argparse.Namespace, endpoints: Endpoints, out: Output) -> int:
    with endpoints.client(SERVICE) as client:
        follower = Follower(client, args)
        for event in follower.start(args.lines):
            out.record(event, describe(event))
        if not args.follow:
            return 0
        stop_at = time.monotonic() + args.duration if args.duration else None
        try:
            while stop_at is None or time.monotonic() < stop_at:
                time.sleep(args.interval)
                for event in follower.poll(time.monotonic()):
                    out.record(event, describe(event))
        except KeyboardInterrupt:
            pass
        for event in follower.flush():
            out.record(event, describe(event))
    return 0


def _is_pattern(value: str) -> bool:
    return any(c in value for c in "*?[")
