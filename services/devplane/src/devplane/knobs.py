"""Fault-injection knobs for tests and demos: all off unless set by env or `POST /knobs`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Knobs:
    """`duplicate_ratio`: share of successful deliveries sent a second time (at-least-once);
    `delay_seconds`: extra wait before every delivery attempt; `paused`: hold all deliveries
    (events still queue, so queues fill up and ingress pushes back)."""

    duplicate_ratio: float = 0.0
    delay_seconds: float = 0.0
    _running: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def __post_init__(self) -> None:
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    @paused.setter
    def paused(self, value: bool) -> None:
        if value:
            self._running.clear()
        else:
            self._running.set()

    async def wait_running(self) -> None:
        await self._running.wait()

    def view(self) -> dict[str, Any]:
        return {
            "duplicate_ratio": self.duplicate_ratio,
            "delay_seconds": self.delay_seconds,
            "paused": self.paused,
        }
