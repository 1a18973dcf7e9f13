"""What the CLI prints: lines for people, or one JSON document a line with --json."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO


@dataclass
class Output:
    json_mode: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)

    def line(self, text: str = "") -> None:
        """A line for people; nothing in --json mode."""
        if not self.json_mode:
            print(text, file=self.out, flush=True)

    def record(self, value: Any, text: str | None = None) -> None:
        """A result: JSON in --json mode, else `text` (or the value, indented)."""
        if self.json_mode:
            print(json.dumps(value, default=str), file=self.out, flush=True)
        elif text != "":  # "": people have seen it all already
            print(text if text is not None else pretty(value), file=self.out, flush=True)

    def note(self, text: str) -> None:
        """Progress and hints, on stderr: never mixed into what a script reads."""
        print(text, file=self.err, flush=True)


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def short_time(stamp: str | None) -> str:
    """`2025-05-24T10:15:00.123Z` -> `10:15:00.123`."""
    if not stamp or "T" not in stamp:
        return stamp or "-"
    return stamp.split("T", 1)[1].rstrip("Z")[:12]


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join(lines)


class Progress:
    """A progress bar on a terminal; elsewhere one line per change, at most one a second."""

    def __init__(self, stream: TextIO, label: str, width: int = 30) -> None:
        self.stream = stream
        self.label = label
        self.width = width
        self.tty = stream.isatty()
        self._last: tuple[int, int, int] | None = None
        self._last_line = 0.0

    def update(self, done: int, total: int, failed: int = 0) -> None:
        state = (done, total, failed)
        if state == self._last:
            return
        now = time.monotonic()
        finished = total > 0 and done >= total
        if not self.tty and not finished and now - self._last_line < 1.0:
            return
        self._last, self._last_line = state, now
        share = done / total if total else 0.0
        failures = f", {failed} failed" if failed else ""
        if self.tty:
            filled = int(share * self.width)
            bar = "#" * filled + "-" * (self.width - filled)
            self.stream.write(f"\r{self.label} [{bar}] {done}/{total} ({share:.0%}){failures}")
            if finished:
                self.stream.write("\n")
        else:
            self.stream.write(f"{self.label}: {done}/{total} ({share:.0%}){failures}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._last is not None and self._last[0] < self._last[1]:
            self.stream.write("\n")
            self.stream.flush()
