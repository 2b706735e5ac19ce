"""Hostile runs: the ``hostile`` marker, the long variants and the summary lines.

Every scenario records a ``Verdict``; the summary line of each is printed at the end of the
pytest run (``hostile NAME: attempts ... lost 0 dup 0 ...``), whether the test passed or not.
``CLOISON_HOSTILE_LONG=1`` runs the long variants (see ``scale``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from tests.hostile.history import Verdict
from tests.support import Client

LONG = os.environ.get("CLOISON_HOSTILE_LONG") == "1"
SUMMARIES: list[str] = []  # one line per scenario, in the order they ran


def scale(bounded: int, long: int) -> int:
    """The size of a load: ``bounded`` in the default (CI) run, ``long`` under LONG=1."""
    return long if LONG else bounded


def report(verdict: Verdict) -> None:
    report_line(verdict.summary())


def report_line(line: str) -> None:
    """Print ``line`` in the run's closing "hostile summaries" section."""
    SUMMARIES.append(line)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/hostile" in str(item.path):
            item.add_marker(pytest.mark.hostile)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SUMMARIES:
        terminalreporter.section("hostile summaries")
        for line in SUMMARIES:
            terminalreporter.write_line(line)


@pytest.fixture(autouse=True)
async def close_clients() -> AsyncIterator[None]:
    yield
    while Client.opened:
        await Client.opened.pop().close()
