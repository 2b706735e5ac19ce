"""The permission matrix: every operation x standing x sphere type, on a real server, and
every organisation operation x org standing (``tests/e2e/matrix/orgs.py``).

Generated from the operation table (``server.operations.table``), the rights table
(``server.access.rights``) and a sample request per row (``tests/e2e/matrix/samples.py``).
Each test is one (row, standing): its cells are the four sphere types, over WebSocket and,
when the row has a route, over HTTP. A cell passes when the answer is the one the rights
table implies — the row's reply (or an object-level refusal the sample documents) when the
standing holds the right, ``forbidden`` in a sphere the user sees, and otherwise ``not_found``
with exactly the code and message that a sphere that does not exist gets.

The whole matrix runs once per module, on one server, before the first test reads it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterator
from typing import Any

import pytest

from protocol import CLIENT_FRAMES
from server.operations import OPERATIONS
from tests.e2e.conftest import start_server
from tests.e2e.matrix.orgs import ORG_SAMPLES, ORG_STANDINGS, run_org_matrix
from tests.e2e.matrix.samples import SAMPLES, STANDINGS
from tests.e2e.matrix.world import run_matrix

pytestmark = pytest.mark.slow


def matrix_rows() -> list[Any]:
    """One test per (row, standing); a row without a sample is a test that fails."""
    params = []
    for op in OPERATIONS:
        sphere_rows = [s.name for s in SAMPLES.get(op.frame, ())]
        org_rows = [s.name for s in ORG_SAMPLES.get(op.frame, ())]
        if not sphere_rows and not org_rows:
            sphere_rows = ["no sample"]
        for names, standings in ((sphere_rows, STANDINGS), (org_rows, ORG_STANDINGS)):
            for name in names:
                for standing in standings:
                    row = f"{op.frame.TYPE}:{name}"
                    params.append(pytest.param(row, standing, id=f"{row}-{standing}"))
    return params


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[tuple[str, str], Any]]:
    server = start_server(tmp_path_factory.mktemp("matrix"), "--sqlite-synchronous", "NORMAL")
    try:
        # In a thread of its own: the run has its own event loop, apart from the tests'.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            results: dict[tuple[str, str], Any] = {}
            results.update(pool.submit(asyncio.run, run_matrix(server)).result())
            # After the sphere cases: the org cases change who belongs to the organisation.
            results.update(pool.submit(asyncio.run, run_org_matrix(server)).result())
            yield results
    finally:
        server.stop()


@pytest.mark.parametrize(("row", "standing"), matrix_rows())
def test_permission_matrix(matrix: dict[tuple[str, str], Any], row: str, standing: str) -> None:
    if row.endswith(":no sample"):
        pytest.fail(f"{row.split(':')[0]} has no sample in tests/e2e/matrix/samples.py")
    cells = matrix[(row, standing)]
    wrong = [f"{cell.case}: {cell.problem}" for cell in cells if cell.problem is not None]
    assert not wrong, f"{row} as {standing}:\n" + "\n".join(wrong)


def test_every_client_frame_has_a_sample() -> None:
    assert [f.TYPE for f in CLIENT_FRAMES if not SAMPLES.get(f) and not ORG_SAMPLES.get(f)] == []
    assert set(SAMPLES) | set(ORG_SAMPLES) <= set(CLIENT_FRAMES)
    # Every row with an organisation right is tried in every org standing.
    assert [
        op.frame.TYPE for op in OPERATIONS if op.org_right and op.frame not in ORG_SAMPLES
    ] == []
