"""PostgresStore beyond the contract: several processes on one database, and outages.

The contract suite (``tests/contract``) covers the ``Store`` semantics on PostgreSQL. Here:
stores with pools of their own (as separate gateway processes have) appending to the same
spheres at once, a real second process doing so, and a PostgreSQL cluster of the test's own
that is killed and restarted under a running store.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Sequence

import asyncpg
import pytest

from protocol import EventKind, Message, MessageId, Privacy, SphereId, UserKind
from storage import AppendResult, Draft, SphereRecord, StoreError, UserRecord, open_store
from storage.migrations import load_migrations
from storage.postgres import PostgresStore
from tests.services import (
    CLUSTER_TIMEOUT_S,
    POSTGRES_URL,
    TIMEOUT_S,
    PostgresCluster,
    own_postgres,
    postgres_schema,
)

pytestmark = pytest.mark.postgres

NOW_MS = 1_700_000_000_000
# An unreachable database must turn into StoreError within this (the store's timeouts are 5 s).
FAIL_FAST_S = 6.0
# initdb and a cluster start take a few seconds; more on a loaded machine.


def post(author: UserRecord, message_id: str, body: str = "hello") -> Draft:
    return Draft(EventKind.POST, MessageId(message_id), author.user_id, NOW_MS, body)


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    async with postgres_schema(POSTGRES_URL) as name:
        yield name


@pytest.fixture
async def store(schema: str) -> AsyncIterator[PostgresStore]:
    async with asyncio.timeout(TIMEOUT_S):
        opened = await PostgresStore.open(POSTGRES_URL, schema=schema, max_size=4)
    try:
        yield opened
    finally:
        async with asyncio.timeout(TIMEOUT_S):
            await opened.aclose()


async def setup_spheres(store: PostgresStore, count: int) -> tuple[UserRecord, list[SphereRecord]]:
    alice = await store.create_user("alice", UserKind.HUMAN, is_admin=False, now_ms=NOW_MS)
    spheres = [
        await store.create_sphere(f"s{n}", Privacy.PRIVATE, alice.user_id, now_ms=NOW_MS)
        for n in range(count)
    ]
    return alice, spheres


async def check_streams(
    store: PostgresStore, spheres: Sequence[SphereRecord]
) -> dict[tuple[SphereId, int], Message]:
    """Check that every sphere's stream is gapless and its counter matches; return all posts."""
    events: dict[tuple[SphereId, int], Message] = {}
    for sphere in spheres:
        stream = await store.events_after(sphere.sphere_id, 0, 100_000)
        assert [event.offset for event in stream] == list(range(1, len(stream) + 1))
        record = await store.get_sphere(sphere.sphere_id)
        assert record is not None
        assert record.offset == len(stream)
        keys = {(event.author_id, event.message_id) for event in stream}
        assert len(keys) == len(stream), "an idempotency key stored twice"
        assert stream[0].kind is EventKind.MEMBER  # the creator's, at offset 1
        events |= {(e.sphere_id, e.offset): e for e in stream if e.kind is EventKind.POST}
    return events


def check_results(
    results: Sequence[AppendResult], stored: dict[tuple[SphereId, int], Message]
) -> None:
    """Every acknowledged event is stored as acknowledged; new ones got distinct offsets."""
    fresh = [result.event for result in results if not result.duplicate]
    assert len({(event.sphere_id, event.offset) for event in fresh}) == len(fresh)
    for result in results:
        assert stored[(result.event.sphere_id, result.event.offset)] == result.event


# ---------------------------------------------------------------------------------------------
# Several writers on one database


async def test_two_pools_append_to_the_same_spheres(schema: str) -> None:
    async with asyncio.timeout(TIMEOUT_S * 3):
        first = await PostgresStore.open(POSTGRES_URL, schema=schema, max_size=2)
        second = await PostgresStore.open(POSTGRES_URL, schema=schema, max_size=2)
        try:
            alice, spheres = await setup_spheres(first, 3)
            jobs: list[tuple[PostgresStore, SphereId, Draft]] = []
            for n in range(400):
                sphere_id = spheres[n % 3].sphere_id
                if n < 100:  # one draft sent through both, as a client retrying on another node
                    draft = post(alice, f"shared-{n}")
                    jobs += [(first, sphere_id, draft), (second, sphere_id, draft)]
                else:
                    jobs += [
                        (first, sphere_id, post(alice, f"first-{n}")),
                        (second, sphere_id, post(alice, f"second-{n}")),
                    ]
            results = await asyncio.gather(
                *(store.append(sphere_id, draft) for store, sphere_id, draft in jobs)
            )
            stored = await check_streams(second, spheres)
        finally:
            await first.aclose()
            await second.aclose()

    assert len(stored) == 700
    check_results(results, stored)
    for n in range(100):
        via_first, via_second = results[2 * n], results[2 * n + 1]
        assert via_first.event == via_second.event
        assert sorted([via_first.duplicate, via_second.duplicate]) == [False, True]


async def test_concurrent_first_opens_migrate_once(schema: str) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        stores = await asyncio.gather(
            *(PostgresStore.open(POSTGRES_URL, schema=schema, max_size=1) for _ in range(3))
        )
        for opened in stores:
            await opened.aclose()
        db = await asyncpg.connect(POSTGRES_URL)
        try:
            versions = await db.fetch(f"SELECT version FROM {schema}.schema_version ORDER BY 1")
        finally:
            await db.close()

    shipped = [m.version for m in load_migrations("postgres")]
    assert [row[0] for row in versions] == shipped  # each once


# The other process: opens its own store, appends its posts and the shared ones when told to go
# (20 writers, each awaiting every append, so that its groups interleave with the test's), and
# prints what it was acknowledged.
_CHILD = """
import asyncio, json, sys

from protocol import EventKind, MessageId, UserId
from storage.base import Draft
from storage.postgres import PostgresStore

async def main(dsn, schema, author_id, sphere_ids, count):
    store = await PostgresStore.open(dsn, schema=schema, max_size=2)
    try:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        acked = []

        async def writer(first):
            for n in range(first, count, 20):
                message_id = f"shared-{n}" if n % 4 == 0 else f"child-{n}"
                draft = Draft(EventKind.POST, MessageId(message_id), UserId(author_id), 0, "x")
                result = await store.append(sphere_ids[n % len(sphere_ids)], draft)
                acked.append([result.event.sphere_id, result.event.offset, message_id,
                              result.duplicate])

        await asyncio.gather(*(writer(first) for first in range(20)))
        print(json.dumps(acked), flush=True)
    finally:
        await store.aclose()

dsn, schema, author_id, sphere_ids, count = sys.argv[1:]
asyncio.run(main(dsn, schema, author_id, json.loads(sphere_ids), int(count)))
"""


async def test_a_second_process_appends_beside_this_one(store: PostgresStore, schema: str) -> None:
    count = 600
    alice, spheres = await setup_spheres(store, 2)
    sphere_ids = [sphere.sphere_id for sphere in spheres]
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CHILD,
        POSTGRES_URL,
        schema,
        alice.user_id,
        json.dumps(sphere_ids),
        str(count),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(TIMEOUT_S * 3):
            assert child.stdout is not None
            assert await child.stdout.readline() == b"ready\n"

            async def writer(first: int) -> list[AppendResult]:
                results = []
                for n in range(first, count, 20):
                    message_id = f"shared-{n}" if n % 4 == 0 else f"parent-{n}"
                    draft = post(alice, message_id, "x")
                    results.append(await store.append(sphere_ids[n % 2], draft))
                return results

            ours = asyncio.gather(*(writer(first) for first in range(20)))
            output, _ = await child.communicate(b"go\n")
            results = [result for batch in await ours for result in batch]
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    assert child.returncode == 0

    theirs = json.loads(output)
    stored = await check_streams(store, spheres)
    shared = count // 4
    assert len(stored) == 2 * count - shared
    check_results(results, stored)
    for sphere_id, offset, message_id, _ in theirs:
        assert stored[(sphere_id, offset)].message_id == message_id
    fresh = [(s, o) for s, o, _, duplicate in theirs if not duplicate]
    fresh += [(r.event.sphere_id, r.event.offset) for r in results if not r.duplicate]
    assert sorted(fresh) == sorted(stored), "each stored event acknowledged once as new"
    ours_by_key = {r.event.message_id: r for r in results}
    for _, offset, message_id, duplicate in theirs:
        if message_id.startswith("shared-"):
            assert ours_by_key[MessageId(message_id)].event.offset == offset
            assert ours_by_key[MessageId(message_id)].duplicate != duplicate
    # The two processes' groups interleaved: neither got one block of offsets.
    child_offsets = sorted(o for s, o, m, _ in theirs if s == sphere_ids[0] and "child" in m)
    assert child_offsets[-1] - child_offsets[0] + 1 > len(child_offsets)


# ---------------------------------------------------------------------------------------------
# PostgreSQL-specific inputs and URLs


async def test_nul_characters_fail_only_their_draft(store: PostgresStore) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        alice, [lobby] = await setup_spheres(store, 1)
        results = await asyncio.gather(
            store.append(lobby.sphere_id, post(alice, "m1")),
            store.append(lobby.sphere_id, post(alice, "m2", "a\x00b")),
            store.append(lobby.sphere_id, post(alice, "m3\x00")),
            store.append(lobby.sphere_id, post(alice, "m4")),
            return_exceptions=True,
        )

    first, body, key, last = results
    assert isinstance(body, ValueError)
    assert isinstance(key, ValueError)
    assert isinstance(first, AppendResult)
    assert isinstance(last, AppendResult)
    assert (first.event.offset, last.event.offset) == (2, 3)


async def test_open_store_postgres_url_with_schema(schema: str) -> None:
    url = POSTGRES_URL.replace("postgresql://", "postgres://") + f"?schema={schema}"
    async with asyncio.timeout(TIMEOUT_S):
        opened = await open_store(url)
        try:
            await opened.create_user("ada", UserKind.HUMAN, is_admin=False, now_ms=NOW_MS)
        finally:
            await opened.aclose()
        db = await asyncpg.connect(POSTGRES_URL)
        try:
            users = await db.fetchval(f"SELECT count(*) FROM {schema}.users")
        finally:
            await db.close()

    assert users == 1


@pytest.mark.parametrize(
    "query", ["schema=a&schema=b", "schema=", "schema=Upper", "schema=a;drop", "schema=a.b"]
)
async def test_open_store_rejects_bad_schemas(query: str) -> None:
    with pytest.raises(ValueError, match="schema"):
        await open_store(f"{POSTGRES_URL}?{query}")


async def test_unreachable_database_is_a_store_error() -> None:
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with asyncio.timeout(FAIL_FAST_S):
        with pytest.raises(StoreError):
            await PostgresStore.open(f"postgresql://postgres@127.0.0.1:{port}/test")


# ---------------------------------------------------------------------------------------------
# Outages: a cluster of the test's own, killed and restarted


@pytest.fixture
async def cluster() -> AsyncIterator[PostgresCluster]:
    async with own_postgres() as pg:
        yield pg


async def test_outage_fails_fast_and_loses_nothing_acknowledged(cluster: PostgresCluster) -> None:
    async with asyncio.timeout(CLUSTER_TIMEOUT_S * 2):
        store = await PostgresStore.open(cluster.dsn, schema="cloison", max_size=4)
        try:
            alice, spheres = await setup_spheres(store, 2)
            acked: list[AppendResult] = []
            failed: list[tuple[SphereId, Draft, float]] = []  # with when it failed
            numbers = iter(range(1_000_000))
            going = asyncio.Event()  # set once the writers have a good number of acks

            async def writer() -> None:
                """Append until the first failure, as a client's pipeline would."""
                for n in numbers:
                    sphere_id = spheres[n % 2].sphere_id
                    draft = post(alice, f"m{n}")
                    try:
                        acked.append(await store.append(sphere_id, draft))
                        if len(acked) == 200:
                            going.set()
                    except StoreError:
                        failed.append((sphere_id, draft, time.monotonic()))
                        return

            writers = [asyncio.create_task(writer()) for _ in range(8)]
            await going.wait()
            await cluster.kill()
            killed = time.monotonic()
            await asyncio.gather(*writers)
            assert len(failed) == len(writers)
            assert max(at for _, _, at in failed) - killed < FAIL_FAST_S

            started = time.monotonic()
            with pytest.raises(StoreError):
                await store.append(spheres[0].sphere_id, post(alice, "during"))
            with pytest.raises(StoreError):
                await store.get_sphere(spheres[0].sphere_id)
            assert time.monotonic() - started < FAIL_FAST_S

            await cluster.start()
            stored = await check_streams(store, spheres)
            check_results(acked, stored)
            # A draft that failed may have been committed all the same (the crash cut the
            # reply); retrying it is safe either way, and the streams go on without a gap.
            retried = [await store.append(sphere_id, draft) for sphere_id, draft, _ in failed]
            more = [
                await store.append(spheres[n % 2].sphere_id, post(alice, f"after-{n}"))
                for n in range(10)
            ]
            stored = await check_streams(store, spheres)
            check_results(acked + retried + more, stored)
            assert not any(result.duplicate for result in more)
            assert len(stored) == len(acked) + len(failed) + len(more)
        finally:
            await store.aclose()


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="finds the server's processes in /proc")
async def test_a_frozen_database_fails_within_the_timeouts(cluster: PostgresCluster) -> None:
    # A server that accepts connections but never answers: only the store's timeouts help.
    async with asyncio.timeout(CLUSTER_TIMEOUT_S):
        store = await PostgresStore.open(cluster.dsn, schema="cloison", max_size=2)
        try:
            alice, [lobby] = await setup_spheres(store, 1)
            before = await store.append(lobby.sphere_id, post(alice, "before"))
            await asyncio.to_thread(cluster.signal, signal.SIGSTOP)
            try:
                for attempt in (
                    store.append(lobby.sphere_id, post(alice, "frozen")),
                    store.get_sphere(lobby.sphere_id),
                ):
                    started = time.monotonic()
                    with pytest.raises(StoreError):
                        await attempt
                    assert time.monotonic() - started < FAIL_FAST_S
            finally:
                await asyncio.to_thread(cluster.signal, signal.SIGCONT)

            after = await store.append(lobby.sphere_id, post(alice, "after"))
            stored = await check_streams(store, [lobby])
            check_results([before, after], stored)
            assert len(stored) in (2, 3)  # the frozen append may have landed once thawed
        finally:
            await store.aclose()
