"""Erasure reaches PostgreSQL's relation files at the next compaction: after a message delete
(with its edits) and a sphere deletion, ``cloison privacy compact`` or the scheduled
compaction leaves no byte of the erased text in any table, index or TOAST file of the schema.

The server runs on a cluster of the test's own, whose data directory the test reads. Each
canary is first found in the files (the positive control).
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from protocol import Ack, DeleteSphere, Edit, Ok
from tests.e2e.conftest import FAST
from tests.e2e.test_erasure_files import canary, delete, metric, post
from tests.raw_files import assert_absent_postgres, assert_absent_text, assert_present_postgres
from tests.services import CLUSTER_TIMEOUT_S, PostgresCluster, own_postgres
from tests.support import ServerProcess, eventually, pair

pytestmark = pytest.mark.postgres

SCHEMA = "cloison"


@pytest.fixture
async def cluster() -> AsyncIterator[PostgresCluster]:
    async with own_postgres() as pg:
        yield pg


@contextmanager
def serving(tmp_path: Path, pg: PostgresCluster, *extra: str) -> Iterator[ServerProcess]:
    node = ServerProcess(
        tmp_path / "data", extra_args=[*FAST, *extra], store_url=f"{pg.dsn}?schema={SCHEMA}"
    )
    node.data_dir.mkdir()
    node.create_admin()
    node.start()
    try:
        yield node
    finally:
        node.stop()


async def erase_everything(
    server: ServerProcess, pg: PostgresCluster, *, compacting: bool = False
) -> list[bytes]:
    """A deleted message, a message edited twice then deleted, a long (TOAST) message
    deleted, and a deleted sphere with its name and posts: the canaries, each found in the
    files first. ``compacting``: a scheduled compaction may already have removed the texts
    the edits replaced (they live on only as dead tuples), so only live texts are looked for.
    """
    alice, _, sphere_id = await pair(server)
    a = await alice.connect()
    plain, toasted = canary(), canary()
    versions = [canary(), canary(), canary()]
    doomed_name, doomed_post = canary(), canary()
    targets = [await post(a, sphere_id, plain)]
    # Random text beyond 2 kB: stored out of line, in the TOAST table, uncompressed.
    targets.append(await post(a, sphere_id, toasted + secrets.token_hex(3000).encode()))
    edited = await post(a, sphere_id, versions[0])
    for body in versions[1:]:
        reply = await a.request(
            Edit(
                sphere_id=sphere_id,
                message_id=secrets.token_hex(8),
                target=edited,
                body=body.decode(),
                ref="e",
            )
        )
        assert isinstance(reply, Ack), reply
    targets.append(edited)
    doomed = await alice.create_sphere(doomed_name.decode())
    await post(a, doomed, doomed_post)
    canaries = [plain, toasted, *versions, doomed_name, doomed_post]
    superseded = versions[:-1] if compacting else []
    for text in canaries:
        if text not in superseded:
            await assert_present_postgres(pg.dsn, SCHEMA, text)

    for target in targets:
        await delete(a, sphere_id, target)
    assert isinstance(await a.request(DeleteSphere(sphere_id=doomed, ref="x")), Ok)
    return canaries


async def test_compact_command_removes_erased_text_from_every_relation_file(
    tmp_path: Path, cluster: PostgresCluster
) -> None:
    with serving(tmp_path, cluster) as server:
        canaries = await erase_everything(server, cluster)
        kept = canary()
        alice, _, sphere_id = await pair(server)
        await post(await alice.connect(), sphere_id, kept)

        command = [sys.executable, "-m", "server", "privacy", "compact"]
        process = await asyncio.create_subprocess_exec(
            *command, "--store-url", server.store_url, stdout=PIPE, stderr=PIPE
        )
        async with asyncio.timeout(CLUSTER_TIMEOUT_S):
            out, err = await process.communicate()
        assert process.returncode == 0, err.decode()
        assert b"events" in out and b"compacted in" in out
        for text in canaries:
            await assert_absent_postgres(cluster.dsn, SCHEMA, text)
            assert_absent_text(server.log, text)
        await assert_present_postgres(cluster.dsn, SCHEMA, kept)  # only the erased went


async def test_the_scheduled_compaction_removes_them_too(
    tmp_path: Path, cluster: PostgresCluster
) -> None:
    # 0.0005 h: every 1.8 s.
    with serving(tmp_path, cluster, "--pg-compact-interval-h", "0.0005") as server:
        canaries = await erase_everything(server, cluster, compacting=True)
        after = await metric(server, "cloison_erasure_compactions")

        async def compacted_since() -> bool:  # a whole run that started after the erasure
            return await metric(server, "cloison_erasure_compactions") >= after + 2

        await eventually(compacted_since, timeout_s=40)
        assert await metric(server, "cloison_erasure_last_compaction_seconds") > 0
        for text in canaries:
            await assert_absent_postgres(cluster.dsn, SCHEMA, text)
