"""A deleted account leaves no byte of it in the storage files: its name, a post and the text
an edited post ended with are in no SQLite file once the job is done, and in no PostgreSQL
relation file after the next compaction; nor in the server's log. Each canary is found in the
files first (the positive control)."""

from __future__ import annotations

import asyncio
import secrets
import sys
from asyncio.subprocess import PIPE
from pathlib import Path

import pytest

from tests.e2e.test_account_deletion import done, posted
from tests.e2e.test_erasure_files_postgres import SCHEMA, serving
from tests.raw_files import (
    assert_absent_postgres,
    assert_absent_sqlite,
    assert_absent_text,
    assert_present_postgres,
    assert_present_sqlite,
)
from tests.services import CLUSTER_TIMEOUT_S, own_postgres
from tests.support import ServerProcess, User


async def write_canaries(server: ServerProcess) -> tuple[User, list[bytes]]:
    """Alice, named by a canary, posts one and another that she edits into a third (the text
    an edit replaces leaves the files with the edit: docs/privacy.md, "Erasure")."""
    name, plain, edited = (secrets.token_hex(16).encode() for _ in range(3))
    bob = await server.new_user("bob")
    alice = await server.new_user(name.decode())
    sphere_id = await bob.create_sphere()
    await bob.add(sphere_id, alice)
    [_, offset] = await posted(await alice.connect(), sphere_id, [plain.decode(), "draft"])
    reply = await alice.api(
        "PUT",
        f"/spheres/{sphere_id}/messages/{offset}",
        json={"message_id": "e1", "body": f"now {edited.decode()}"},
    )
    assert reply.status_code == 200, reply.text
    return alice, [name, plain, edited]


async def test_an_erased_account_leaves_no_byte_of_it_in_the_sqlite_files(
    server: ServerProcess,
) -> None:
    alice, canaries = await write_canaries(server)
    for canary in canaries:  # the check can fail: the bytes are there
        assert_present_sqlite(server.data_dir, canary)
    await alice.api("DELETE", "/me", json={"confirm": alice.user_id})
    await done(server, alice.user_id)
    for canary in canaries:  # its name, what it wrote, every version of it
        assert_absent_sqlite(server.data_dir, canary)
        assert_absent_text(server.log, canary)


@pytest.mark.postgres
async def test_an_erased_account_leaves_no_byte_of_it_in_postgres_after_compaction(
    tmp_path: Path,
) -> None:
    async with own_postgres() as pg:
        with serving(tmp_path, pg) as server:
            alice, canaries = await write_canaries(server)
            for canary in canaries:
                await assert_present_postgres(pg.dsn, SCHEMA, canary)
            await alice.api("DELETE", "/me", json={"confirm": alice.user_id})
            await done(server, alice.user_id)
            compact = [sys.executable, "-m", "server", "privacy", "compact"]
            process = await asyncio.create_subprocess_exec(
                *compact, "--store-url", server.store_url, stdout=PIPE, stderr=PIPE
            )
            async with asyncio.timeout(CLUSTER_TIMEOUT_S):
                _, err = await process.communicate()
            assert process.returncode == 0, err.decode()
            for canary in canaries:
                await assert_absent_postgres(pg.dsn, SCHEMA, canary)
                assert_absent_text(server.log, canary)
