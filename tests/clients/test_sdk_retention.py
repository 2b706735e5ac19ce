"""The SDK and retention against a real server: a sphere's period within the server's, and
the "history truncated" signal on paging back and on resuming."""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clients import ConflictError, LegalHoldError
from protocol import StreamPosition
from tests.clients import serving
from tests.clients.governance import owned, sdk
from tests.support import ServerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with serving(tmp_path, "--retention-days", "30") as proc:
        yield proc


async def test_history_and_resume_say_where_retention_cut(server: ServerProcess) -> None:
    (alice,), sphere_id = await owned(server, "alice")
    async with sdk(server, alice) as a:
        with pytest.raises(ConflictError, match="at most 30 days"):
            await a.update_sphere(sphere_id, retention_days=31)
        sphere = await a.update_sphere(sphere_id, retention_days=7)
        assert (sphere.retention_days, sphere.retained_from, sphere.legal_hold) == (7, 0, None)
        old = await a.publish(sphere_id, "soon gone")
        as_of = datetime.datetime.fromtimestamp(time.time() + 8 * 86_400, datetime.UTC)
        server.cli("retention", "run", "--retention-days", "30", "--as-of", as_of.isoformat())
        fresh = await a.publish(sphere_id, "kept")
        pages = a.history(sphere_id)
        assert [m.body async for m in pages] == ["kept"]
        assert pages.truncated_before == fresh.offset
        subscribed = await a.subscribe(
            sphere_id, since=StreamPosition(old.offset - 1, sphere.epoch)
        )
        assert subscribed.truncated_before == fresh.offset
        # Back to the server's default: 30 days.
        sphere = await a.update_sphere(sphere_id, retention_days=0)
        assert sphere.retention_days is None and sphere.retained_from == fresh.offset
        server.cli("retention", "hold", sphere_id, "--reason", "review")
        with pytest.raises(LegalHoldError):
            await a.delete(sphere_id, fresh.offset)
