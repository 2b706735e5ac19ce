"""A deleted organisation leaves no byte of it in PostgreSQL's relation files after the next
compaction: its name, its sphere's name, a post and the name of a member who belonged to it
only. The server runs on a cluster of the test's own, whose data directory the test reads;
each canary is first found in the files (the positive control)."""

from __future__ import annotations

import asyncio
import secrets
import sys
from asyncio.subprocess import PIPE
from pathlib import Path

import pytest

from tests.e2e.test_account_deletion import done as account_done, posted
from tests.e2e.test_erasure_files_postgres import SCHEMA, serving
from tests.e2e.test_org_lifecycle import add_user, create_org, deletion_done, org_sphere
from tests.raw_files import assert_absent_postgres, assert_absent_text, postgres_holding
from tests.services import CLUSTER_TIMEOUT_S, own_postgres

pytestmark = pytest.mark.postgres


async def test_a_deleted_organisation_leaves_no_byte_of_it_after_compaction(
    tmp_path: Path,
) -> None:
    async with own_postgres() as pg:
        with serving(tmp_path, pg) as server:
            org_name, sphere_name, body, member_name = (secrets.token_hex(16) for _ in range(4))
            await create_org(server, "acme", org_name)
            ada = add_user(server, "acme", member_name, manager=True)
            sphere_id = await org_sphere(server, "acme", ada, sphere_name)
            await posted(await ada.connect(), sphere_id, [body])
            kept = secrets.token_hex(16)
            await create_org(server, "other", kept)
            canaries = [t.encode() for t in (org_name, sphere_name, body, member_name)]
            for canary in canaries:
                assert await postgres_holding(pg.dsn, SCHEMA, canary), canary

            async with server.http(server.admin_token) as http:
                reply = await http.delete("/api/v1/admin/orgs/acme")
            assert reply.status_code == 202, reply.text
            await deletion_done(server, "acme")
            await account_done(server, ada.user_id)
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
            assert await postgres_holding(pg.dsn, SCHEMA, kept.encode())  # only it went
