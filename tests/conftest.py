"""Shared test settings: services that tests need, and how their absence is reported.

When ``CLOISON_REQUIRE_SERVICES=1`` (set by ``.ci/run``), a test that would skip because
Redis or PostgreSQL is missing fails instead, so CI always runs them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from tests.support import Client

REQUIRE_SERVICES = os.environ.get("CLOISON_REQUIRE_SERVICES") == "1"


def skip_or_fail(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"required service missing: {reason}")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
async def close_clients() -> AsyncIterator[None]:
    """Close the test clients a test left open, in the test's own event loop."""
    yield
    while Client.opened:
        await Client.opened.pop().close()
