"""JSON logs: one object a line, on stdout, for `kubectl logs` and any log shipper."""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, Final

import orjson

from fnkit.tracing import current_trace

# LogRecord's own attributes; anything else on a record came from `extra=` and is logged.
_RECORD_FIELDS: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "color_message"}
)

_MILLISECONDS: Final = tuple(f".{ms:03d}Z" for ms in range(1000))  # formatting one costs more


class JsonFormatter(logging.Formatter):
    def __init__(self, function: str) -> None:
        super().__init__()
        self.function = function
        self._second = -1
        self._second_text = ""

    def _timestamp(self, created: float) -> str:
        second = int(created)
        if second != self._second:  # strftime once a second, not once a line
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return self._second_text + _MILLISECONDS[int((created - second) * 1000)]

    def entry(self, created: float, level: str, logger: str, msg: str) -> dict[str, Any]:
        """A line's standard fields: the ones every line has, and the trace it belongs to."""
        entry: dict[str, Any] = {
            "ts": self._timestamp(created),
            "level": level,
            "function": self.function,
            "logger": logger,
            "msg": msg,
        }
        trace = current_trace.get()
        if trace is not None:
            entry["trace_id"] = trace.trace_id
        return entry

    def head(self, level: str, logger: str, msg: str) -> bytes:
        """What `entry` encodes between `ts` and `trace_id`: `,"level":...,"msg":...`."""
        entry = {"level": level, "function": self.function, "logger": logger, "msg": msg}
        return b"," + orjson.dumps(entry)[1:-1]

    def encode(self, record: logging.LogRecord) -> bytes:
        """The record as one line of JSON, without the newline."""
        entry = self.entry(
            record.created, record.levelname.lower(), record.name, record.getMessage()
        )
        entry.update({k: v for k, v in record.__dict__.items() if k not in _RECORD_FIELDS})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str)

    def format(self, record: logging.LogRecord) -> str:
        return self.encode(record).decode()


class JsonLinesHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes each record as one JSON line, in one write to stdout's file descriptor.

    One syscall a line, as StreamHandler's write-and-flush costs too, without the text layer.
    """

    def __init__(self, function: str) -> None:
        super().__init__(sys.stdout)
        self.formatter: JsonFormatter = JsonFormatter(function)
        try:
            self._fd: int | None = sys.stdout.fileno()
        except (AttributeError, OSError, ValueError):  # stdout replaced, e.g. by a test runner
            self._fd = None
        self._heads: dict[tuple[int, str, str], bytes] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if self._fd is None:
            super().emit(record)
            return
        try:
            self._write(self.formatter.encode(record) + b"\n")
        except Exception:
            self.handleError(record)

    def _write(self, line: bytes) -> None:
        assert self._fd is not None
        while line:  # a signal can cut a write short
            line = line[os.write(self._fd, line) :]

    def write_fields(self, level: int, logger: str, msg: str, fields: dict[str, Any]) -> None:
        """The line `emit` would write for this record, without building the record.

        Spliced from bytes: the standard fields but `ts` are encoded once per (level, logger,
        message), and only `fields` go through the JSON encoder on each call.
        """
        created = time.time()
        head = self._heads.get((level, logger, msg))
        if head is None:
            head = self.formatter.head(_LEVEL_NAMES[level], logger, msg)
            if len(self._heads) < 256:
                self._heads[level, logger, msg] = head
        if fields and _STANDARD_KEYS.isdisjoint(fields):
            parts = [b'{"ts":"', self.formatter._timestamp(created).encode(), b'"', head]
            trace = current_trace.get()
            if trace is not None:
                parts.append(b',"trace_id":' + orjson.dumps(trace.trace_id))
            parts.append(b"," + orjson.dumps(fields, default=str)[1:] + b"\n")
            line = b"".join(parts)
        else:  # a field named like a standard one takes its place, as in `encode`
            entry = self.formatter.entry(created, _LEVEL_NAMES[level], logger, msg)
            entry.update(fields)
            line = orjson.dumps(entry, default=str) + b"\n"
        with self.lock:  # type: ignore[union-attr]
            self._write(line)


_STANDARD_KEYS: Final = frozenset({"ts", "level", "function", "logger", "msg", "trace_id"})
_LEVEL_NAMES: Final = {
    level: logging.getLevelName(level).lower()
    for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)
}


def _sole_handler(logger: logging.Logger, level: int) -> JsonLinesHandler | None:
    """fnkit's handler, if a record from `logger` would reach it and nothing else at all."""
    found: JsonLinesHandler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters or current.disabled:
            return None
        for handler in current.handlers:
            if (
                found is not None
                or type(handler) is not JsonLinesHandler
                or handler.filters
                or level < handler.level
                or handler._fd is None
            ):
                return None
            found = handler
        current = current.parent if current.propagate else None
    return found


def log_fields(logger: logging.Logger, level: int, msg: str, fields: dict[str, Any]) -> None:
    """`logger.log(level, msg, extra=fields)`, cheaper: this is the call every invocation makes.

    When fnkit's own handler is the only place the record would go (as when serving), the
    line is written directly, without a LogRecord; otherwise (a test's handler, caplog) the
    record goes through logging as usual, minus the caller lookup, which no line shows.
    """
    if not logger.isEnabledFor(level):
        return
    handler = _sole_handler(logger, level)
    if handler is not None and level in _LEVEL_NAMES:
        handler.write_fields(level, logger.name, msg, fields)
    else:
        logger.handle(logger.makeRecord(logger.name, level, "", 0, msg, (), None, extra=fields))


def configure_logging(function: str, level: str) -> None:
    """Route every logger (uvicorn's too) through one JSON handler on stdout."""
    handler = JsonLinesHandler(function)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # fnkit writes one line per invocation itself; uvicorn's access line would double it.
    logging.getLogger("uvicorn.access").disabled = True
    # Connection pools log every retry at WARNING; the invocation line already says it.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
