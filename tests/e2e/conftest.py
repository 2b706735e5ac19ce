from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ServerProcess

# Generous limits so tests that are not about rate limiting never hit them.
FAST = [
    flag
    for cls in ("publish", "membership", "sphere-admin", "read-marker", "typing", "query")
    for flag in (f"--{cls}-rate-per-s", "100000", f"--{cls}-burst", "100000")
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e" in str(item.path):
            item.add_marker(pytest.mark.e2e)


def start_server(tmp_path: Path, *extra: str) -> ServerProcess:
    server = ServerProcess(tmp_path / "data", extra_args=[*FAST, *extra])
    server.data_dir.mkdir(exist_ok=True)
    server.create_admin()
    server.start()
    return server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = start_server(tmp_path)
    yield proc
    proc.stop()
