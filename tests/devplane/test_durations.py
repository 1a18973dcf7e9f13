from __future__ import annotations

import pytest
from devplane.durations import DurationError, parse_duration

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("PT0.5S", 0.5),
        ("PT1S", 1.0),
        ("PT30S", 30.0),
        ("PT2M", 120.0),
        ("PT1M30S", 90.0),
        ("PT1H", 3600.0),
        ("P1D", 86400.0),
        ("P1W", 604800.0),
        ("P1DT2H", 93600.0),
        ("PT0,25S", 0.25),
        ("pt0.2s", 0.2),
    ],
)
def test_parses_iso_8601_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "P", "PT", "1S", "PT1", "0.5", "PT-1S", "P1DT", "PT1S2M"])
def test_refuses_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(DurationError, match="ISO-8601"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["P1Y", "P2M", "P1YT1S"])
def test_refuses_years_and_months_which_have_no_fixed_length(text: str) -> None:
    with pytest.raises(DurationError, match="not Y or M"):
        parse_duration(text)


def test_refuses_a_number_where_a_string_is_expected() -> None:
    with pytest.raises(DurationError):
        parse_duration(5)  # type: ignore[arg-type]
