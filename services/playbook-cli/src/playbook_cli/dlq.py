"""`playbook dlq list | show | replay | purge`: the dead-letter service's API, for people."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from playbook_cli.endpoints import ApiError, Endpoints, checked, request
from playbook_cli.output import Output, pretty, table

SERVICE = "dead-letter"
PAGE = 200


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "dlq",
        help="list, show, replay and purge dead letters",
        description="Events whose deliveries failed until the retries ran out, as stored by "
        "the dead-letter service.",
    )
    sub = parser.add_subparsers(dest="dlq_command", required=True, metavar="COMMAND")

    listing = sub.add_parser(
        "list", help="list dead letters, newest first", description="List dead letters."
    )
    _filters(listing)
    listing.add_argument("--since", help="dead-lettered at or after (ISO-8601)")
    listing.add_argument(
        "-n", "--limit", type=int, default=50, help="at most this many (%(default)s)"
    )
    listing.set_defaults(run=run_list)

    show = sub.add_parser(
        "show",
        help="one dead letter: the original event, the error, replays",
        description="Show one dead letter in full.",
    )
    show.add_argument("id", help="the dead letter's id (from `dlq list`)")
    show.set_defaults(run=run_show)

    replay = sub.add_parser(
        "replay",
        help="send dead letters again",
        description="Send the original events again, to the broker unless --target says "
        "otherwise; each attempt is recorded on its dead letter. Give ids, or filters to "
        "replay every match. Exit status 1 when any replay failed.",
    )
    replay.add_argument("ids", nargs="*", metavar="ID", help="dead letter ids")
    _filters(replay)
    replay.add_argument(
        "--target",
        default="broker",
        help="'broker' (default), 'destination' (the subscriber that failed) or a URL",
    )
    replay.add_argument(
        "--delete", action="store_true", help="delete each dead letter once its replay is delivered"
    )
    replay.set_defaults(run=run_replay)

    purge = sub.add_parser(
        "purge",
        help="delete dead letters matching filters",
        description="Delete every dead letter matching all the given filters (at least one, "
        "or --all). Asks first on a terminal; elsewhere --yes is required.",
    )
    _filters(purge)
    purge.add_argument("--before", help="dead-lettered before (ISO-8601)")
    purge.add_argument("--all", action="store_true", help="every dead letter stored until now")
    purge.add_argument("-y", "--yes", action="store_true", help="do not ask")
    purge.set_defaults(run=run_purge)


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--type", help="exact event type")
    parser.add_argument("--source", help="exact event source")
    parser.add_argument("--destination", help="exact failed subscriber URL")


def _query(args: argparse.Namespace, *names: str) -> dict[str, str]:
    return {name: getattr(args, name) for name in names if getattr(args, name, None)}


def _pages(client: httpx.Client, query: dict[str, str], limit: int) -> Iterator[dict[str, Any]]:
    cursor: str | None = None
    returned = 0
    while returned < limit:
        params = {**query, "limit": str(min(PAGE, limit - returned))}
        if cursor:
            params["cursor"] = cursor
        page = checked(request(client, "GET", "/dead-letters", params=params))
        for item in page["items"]:
            returned += 1
            yield item
        cursor = page.get("next_cursor")
        if not cursor:
            return


def run_list(args: argparse.Namespace, endpoints: Endpoints, out: Output) -> int:
    query = _query(args, "type", "source", "destination", "since")
    with endpoints.client(SERVICE) as client:
        items = list(_pages(client, query, args.limit))
    if out.json_mode:
        for item in items:
            out.record(item)
        return 0
    if not items:
        out.line("no dead letters" + (" matching the filters" if query else ""))
        return 0
    rows = [
        [
            item["id"],
            item["type"],
            str(item.get("code") or "-"),
            item.get("destination") or "-",
            item["received_at"],
            str(item.get("replay_count", 0)),
        ]
        for item in items
    ]
    out.line(table(rows, ["ID", "TYPE", "CODE", "DESTINATION", "DEAD-LETTERED", "REPLAYS"]))
    return 0


def run_show(args: argparse.Namespace, endpoints: Endpoints, out: Output) -> int:
    with endpoints.client(SERVICE) as client:
        letter = checked(request(client, "GET", f"/dead-letters/{quote(args.id, safe='')}"))
    if out.json_mode:
        out.record(letter)
        return 0
    event = letter["event"]
    error = letter.get("error") or {}
    out.line(f"dead letter {letter['id']}")
    out.line(f"  event:        {letter['type']} id={letter['event_id']} source={letter['source']}")
    out.line(f"  failed at:    {error.get('destination') or '-'} (HTTP {error.get('code') or '-'})")
    if error.get("body"):
        out.line(f"  its answer:   {error['body']}")
    out.line(f"  received:     {letter['received_at']} ({letter['deliveries']} time(s))")
    out.line(f"  replays:      {letter['replay_count']}")
    for replay in letter.get("replays", []):
        out.line(
            f"    {replay['at']} -> {replay['target']}: {replay['outcome']} ({replay['message']})"
        )
    out.line("  attributes:")
    for name, value in sorted(event["attributes"].items()):
        out.line(f"    {name}: {value}")
    out.line("  data:")
    out.line("    " + pretty(event.get("data")).replace("\n", "\n    "))
    return 0


def run_replay(args: argparse.Namespace, endpoints: Endpoints, out: Output) -> int:
    query = _query(args, "type", "source", "destination")
    if bool(args.ids) == bool(query):
        raise SystemExit("playbook dlq replay: give dead letter ids, or filters, not both")
    failed = 0
    with endpoints.client(SERVICE) as client:
        ids = args.ids or [item["id"] for item in _pages(client, query, sys.maxsize)]
        if not ids:
            out.line("no dead letters match")
        for letter_id in ids:
            path = f"/dead-letters/{quote(letter_id, safe='')}"
            response = request(client, "POST", f"{path}/replay", json={"target": args.target})
            try:
                result = checked(response)
            except ApiError as exc:
                failed += 1
                out.record(
                    {"dead_letter_id": letter_id, "outcome": "failed", "error": str(exc)},
                    f"{letter_id}: replay failed: {exc}",
                )
                continue
            deleted = False
            if args.delete and result["outcome"] == "delivered":
                checked(request(client, "DELETE", path))
                deleted = True
            out.record(
                {**result, "deleted": deleted},
                f"{letter_id}: {result['outcome']} to {result['target']} ({result['message']})"
                + (", deleted" if deleted else ""),
            )
    return 1 if failed else 0


def run_purge(args: argparse.Namespace, endpoints: Endpoints, out: Output) -> int:
    query = _query(args, "type", "source", "destination", "before")
    if args.all:
        query.setdefault("before", datetime.now(UTC).isoformat())
    if not query:
        raise SystemExit("playbook dlq purge: give at least one filter, or --all")
    if not args.yes:
        if not sys.stdin.isatty():
            raise SystemExit("playbook dlq purge: not a terminal; add --yes to purge")
        described = ", ".join(f"{k}={v}" for k, v in query.items())
        answer = input(f"purge the dead letters matching {described}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            out.line("nothing purged")
            return 1
    with endpoints.client(SERVICE) as client:
        result = checked(request(client, "DELETE", "/dead-letters", params=query))
    out.record(result, f"purged {result['deleted']} dead letter(s)")
    return 0
