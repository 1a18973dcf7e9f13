"""Injected failures (test knobs, off by default): transient 503s and items that never pass."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from fnkit import Unavailable


class InjectedFault(Unavailable):
    code = "injected_fault"


class Faults:
    def __init__(self, first_attempt_ratio: float, fail_sku_pattern: str) -> None:
        self.first_attempt_ratio = first_attempt_ratio
        self.fail_sku = re.compile(fail_sku_pattern) if fail_sku_pattern else None
        self._failed_once: set[str] = set()

    def check(self, event_id: str, record: Any) -> None:
        """Raise InjectedFault (a 503) when the knobs say this delivery fails."""
        sku = record.get("sku") if isinstance(record, dict) else None
        if self.fail_sku is not None and isinstance(sku, str) and self.fail_sku.fullmatch(sku):
            raise InjectedFault(f"injected failure: sku {sku!r} always fails")
        if (
            self.first_attempt_ratio
            and event_id not in self._failed_once
            and _share(event_id) < self.first_attempt_ratio
        ):
            self._failed_once.add(event_id)
            raise InjectedFault(f"injected failure: first attempt of {event_id}")


def _share(event_id: str) -> float:
    """A stable number in [0, 1) per event id, so a run picks the same items every time."""
    digest = hashlib.blake2b(event_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest) / 2**64
