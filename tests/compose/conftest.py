"""Lists, after the run, the compose entries that were checked without their service's code."""

from __future__ import annotations

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests.compose.model import ROOT
    from tests.compose.test_compose import CRON_JOBS, PENDING

    ran = (r for reports in terminalreporter.stats.values() for r in reports)
    if not any(str(getattr(r, "nodeid", "")).startswith("tests/compose/") for r in ran):
        return
    jobs = [j for j in CRON_JOBS if not (ROOT / "services" / j / "pyproject.toml").is_file()]
    if PENDING or jobs:
        terminalreporter.section("compose: services not written yet")
        if PENDING:
            terminalreporter.write_line(
                "functions checked without their code: " + ", ".join(PENDING)
            )
        if jobs:
            terminalreporter.write_line("cron job packages missing: " + ", ".join(jobs))
