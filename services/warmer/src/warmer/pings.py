"""Pinging functions, all at once, each with its own outcome and latency."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True, slots=True)
class Ping:
    """One target's answer: a 2xx within the timeout is a success."""

    target: str
    status: int | None
    latency_ms: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and 200 <= self.status < 300

    def view(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "outcome": "ok" if self.ok else "failed",
            "status": self.status,
            "latency_ms": self.latency_ms,
            "error": self.error,
        }


async def ping(client: httpx.AsyncClient, target: str, path: str) -> Ping:
    started = time.perf_counter()
    try:
        response = await client.get(target + path)
    except httpx.HTTPError as exc:
        elapsed = round((time.perf_counter() - started) * 1000, 1)
        return Ping(target, None, elapsed, f"{type(exc).__name__}: {exc}".rstrip(": "))
    elapsed = round((time.perf_counter() - started) * 1000, 1)
    error = None if response.is_success else f"HTTP {response.status_code}"
    return Ping(target, response.status_code, elapsed, error)


async def ping_all(targets: Sequence[str], path: str, seconds: float) -> list[Ping]:
    """Every target at once: the slowest cold start bounds the run, not their sum."""
    limits = httpx.Limits(max_connections=max(len(targets), 1))
    async with httpx.AsyncClient(timeout=seconds, limits=limits) as client:
        return list(await asyncio.gather(*(ping(client, target, path) for target in targets)))
