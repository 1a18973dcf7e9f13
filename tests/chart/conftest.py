"""Fixtures of the chart tests: the values file and the default rendering."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.chart.helpers import CHART, Rendered, render


@pytest.fixture(scope="session")
def chart_values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return loaded


@pytest.fixture(scope="session")
def default() -> Rendered:
    return render()
