"""A PostgreSQL of the test's own that stops taking writes, or stops answering commits."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from protocol import EventKind, MessageId, Privacy, UserKind
from storage import Draft, OutcomeUnknownError, StoreError
from storage.postgres import PostgresStore
from tests.services import CLUSTER_TIMEOUT_S, own_postgres

pytestmark = [pytest.mark.postgres]


async def set_read_only(dsn: str, read_only: bool) -> None:
    db = await asyncpg.connect(dsn)
    try:
        if read_only:
            await db.execute("ALTER SYSTEM SET default_transaction_read_only = on")
        else:
            await db.execute("ALTER SYSTEM RESET default_transaction_read_only")
        await db.execute("SELECT pg_reload_conf()")
    finally:
        await db.close()


async def writable_error(store: PostgresStore, *, expected: bool) -> str:
    """The readiness check's error once it (no longer) fails: a reload reaches each session
    when it next reads a command, so the first checks may still see the old setting."""
    async with asyncio.timeout(10):
        while True:
            try:
                await store.check_writable()
            except StoreError as exc:
                if expected:
                    return exc.message
            else:
                if not expected:
                    return ""
            await asyncio.sleep(0.05)  # another process's state: nothing to await


async def test_a_read_only_database_is_not_writable() -> None:
    async with own_postgres() as pg, asyncio.timeout(CLUSTER_TIMEOUT_S):
        store = await PostgresStore.open(pg.dsn, schema="cloison", max_size=2)
        try:
            user = await store.create_user("alice", UserKind.HUMAN, is_admin=False, now_ms=1)
            sphere = await store.create_sphere("s", Privacy.PRIVATE, user.user_id, now_ms=1)
            await store.check_writable()
            await set_read_only(pg.dsn, True)
            assert "read-only" in await writable_error(store, expected=True)
            draft = Draft(EventKind.POST, MessageId("m1"), user.user_id, 1, "x")
            with pytest.raises(StoreError) as refused:
                await store.append(sphere.sphere_id, draft)
            # The server refused the statement: certainly not written, not "unknown".
            assert not isinstance(refused.value, OutcomeUnknownError)
            await set_read_only(pg.dsn, False)
            assert await writable_error(store, expected=False) == ""
            stored = await store.append(sphere.sphere_id, draft)
            assert (stored.event.offset, stored.duplicate) == (sphere.offset + 1, False)
        finally:
            await store.aclose()


async def test_a_directory_write_cut_during_its_commit_is_unknown() -> None:
    async with own_postgres() as pg, asyncio.timeout(CLUSTER_TIMEOUT_S):
        store = await PostgresStore.open(pg.dsn, schema="cloison", max_size=2)
        db = await asyncpg.connect(pg.dsn)
        try:
            user = await store.create_user("alice", UserKind.HUMAN, is_admin=False, now_ms=1)
            # Commits wait for a synchronous standby that does not exist, until the store's
            # statement timeout gives up on them: committed locally, answer never received.
            await db.execute("ALTER SYSTEM SET synchronous_standby_names = 'nobody'")
            await db.execute("SELECT pg_reload_conf()")
            with pytest.raises(OutcomeUnknownError, match="may or may not"):
                await store.create_sphere("in doubt", Privacy.PRIVATE, user.user_id, now_ms=2)
            await db.execute("ALTER SYSTEM RESET synchronous_standby_names")
            await db.execute("SELECT pg_reload_conf()")
            # It was made after all (once the wait is released, which the reload does a moment
            # later): checking before repeating it was the right advice.
            async with asyncio.timeout(10):
                while not (spheres := await store.user_spheres(user.user_id)):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)  # another process's state: nothing to await
            assert [summary.name for summary in spheres] == ["in doubt"]
        finally:
            await db.close()
            await store.aclose()


class ResetKiller:
    """A pool ``reset`` hook that, once armed, has the server terminate the backend of the
    connection being released: the session dies after its COMMIT was answered, while the pool
    resets it (what a kill -9 of a backend does to a release in flight, at a chosen moment)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.armed = False
        self.fired = 0

    async def __call__(self, connection: asyncpg.Connection) -> None:
        if not self.armed:
            return
        self.armed = False
        killer = await asyncpg.connect(self.dsn)
        try:
            await killer.execute("SELECT pg_terminate_backend($1)", connection.get_server_pid())
        finally:
            await killer.close()
        self.fired += 1
        await connection.execute("SELECT 1")  # the terminated session fails here


async def test_a_session_lost_after_its_commit_was_answered_is_not_unavailable() -> None:
    """The release of a connection after a COMMIT the server answered fails: the write is
    stored, and is answered as stored, not as "certainly not written"."""
    async with own_postgres() as pg, asyncio.timeout(CLUSTER_TIMEOUT_S):
        await (await PostgresStore.open(pg.dsn, schema="cloison")).aclose()  # migrates
        killer = ResetKiller(pg.dsn)
        pool = await asyncpg.create_pool(
            pg.dsn, min_size=1, max_size=2, reset=killer, server_settings={"search_path": "cloison"}
        )
        store = PostgresStore(pool)
        try:
            killer.armed = True
            user = await store.create_user("alice", UserKind.HUMAN, is_admin=False, now_ms=1)
            assert killer.fired == 1
            assert await store.get_user(user.user_id) == user
            killer.armed = True
            sphere = await store.create_sphere("s", Privacy.PRIVATE, user.user_id, now_ms=1)
            assert killer.fired == 2
            assert (await store.get_sphere(sphere.sphere_id)) is not None
            draft = Draft(EventKind.POST, MessageId("m1"), user.user_id, 1, "x")
            killer.armed = True
            stored = await store.append(sphere.sphere_id, draft)
            assert killer.fired == 3
            assert (stored.event.offset, stored.duplicate) == (2, False)
            again = await store.append(sphere.sphere_id, draft)
            assert (again.event, again.duplicate) == (stored.event, True)
        finally:
            await store.aclose()
