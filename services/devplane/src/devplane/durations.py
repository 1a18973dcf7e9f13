"""ISO-8601 durations, as Knative's `backoffDelay` and `timeout` are written (`PT0.5S`, `PT1M`)."""

from __future__ import annotations

import re
from typing import Final

_NUMBER = r"(\d+(?:[.,]\d+)?)"
_DURATION: Final = re.compile(
    rf"^P(?:{_NUMBER}Y)?(?:{_NUMBER}M)?(?:{_NUMBER}W)?(?:{_NUMBER}D)?"
    rf"(?:T(?:{_NUMBER}H)?(?:{_NUMBER}M)?(?:{_NUMBER}S)?)?$"
)
_SECONDS: Final = (7 * 86400, 86400, 3600, 60, 1)  # weeks, days, hours, minutes, seconds


class DurationError(ValueError):
    """Not an ISO-8601 duration devplane can turn into seconds."""


def parse_duration(text: str) -> float:
    """Seconds in an ISO-8601 duration such as `PT0.5S`, `PT1M30S` or `P1D`."""
    if not isinstance(text, str):
        raise DurationError(f"{text!r} is not an ISO-8601 duration string (e.g. PT0.5S)")
    match = _DURATION.match(text.strip().upper())
    if match is None or text.strip().upper() in ("P", "PT") or text.strip().upper().endswith("T"):
        raise DurationError(f"{text!r} is not an ISO-8601 duration (e.g. PT0.5S, PT2M, P1D)")
    years, months, *rest = match.groups()
    if years is not None or months is not None:
        # Years and months have no fixed length; Knative's own parser only approximates them.
        raise DurationError(f"{text!r}: use weeks, days, hours, minutes or seconds, not Y or M")
    return sum(
        float(value.replace(",", ".")) * unit
        for value, unit in zip(rest, _SECONDS, strict=True)
        if value is not None
    )
