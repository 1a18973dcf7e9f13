"""`devplane COMMAND`: `dev` (the whole platform as processes) or `servers` (MongoDB, MinIO)."""

from __future__ import annotations

import sys

from devplane import dev, servers

COMMANDS = {"dev": dev.main, "servers": servers.main}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in COMMANDS:
        print(f"usage: devplane {{{','.join(COMMANDS)}}} [--help]", file=sys.stderr)
        return 2
    return COMMANDS[args[0]](args[1:]) or 0
