"""A commit whose answer never comes: the client hears ``unknown``, and nothing is lost.

Each test runs a gateway on a PostgreSQL cluster of its own, and makes COMMIT hang the way a
real server does when it waits for a synchronous standby that does not exist
(``synchronous_standby_names``): the commit record is flushed locally, the transaction only
becomes visible once the wait ends. Ending the wait by terminating the backend
(``pg_terminate_backend``, as an operator or a failover would) or by the gateway's own
statement timeout leaves the gateway unable to know whether the write landed. A read-only
SQLite data directory (a read-only mount, which stops even root) must take the node out of
readiness.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from clients import Client as SdkClient
from clients._reconnect import Backoff
from protocol import Ack, ErrorReply, History, Message, Publish, Subscribe
from tests.e2e.conftest import FAST, start_server
from tests.services import TIMEOUT_S, PostgresCluster, own_postgres
from tests.support import Client, ServerProcess, eventually, pair

# The gateway's statement timeout (storage.postgres.COMMAND_TIMEOUT_S) plus a loaded machine.
COMMIT_TIMEOUT_BOUND_S = 15.0
WRITES_PER_WRITER = 100
# Often enough that most writes meet a fresh session; rarely enough that a loaded machine
# still gets work done between two rounds (reconnecting costs a backend start each).
TERMINATE_EVERY_S = 0.25
# A hub repair whose read fails is logged by the task supervisor; retrying repairs is the
# hub's business, not the store's.
_REPAIR_FAILURES = "task repair"


@contextlib.asynccontextmanager
async def gateway_on(pg: PostgresCluster, tmp_path: Path) -> AsyncIterator[ServerProcess]:
    node = ServerProcess(tmp_path / "data", extra_args=FAST, store_url=f"{pg.dsn}?schema=cloison")
    node.data_dir.mkdir()
    node.create_admin()
    node.start()
    try:
        yield node
    finally:
        node.stop()


@contextlib.asynccontextmanager
async def superuser(pg: PostgresCluster) -> AsyncIterator[asyncpg.Connection]:
    async with asyncio.timeout(TIMEOUT_S):
        db = await asyncpg.connect(pg.dsn)
    try:
        yield db
    finally:
        await db.close()


async def hang_commits(db: asyncpg.Connection, hang: bool) -> None:
    """Make every COMMIT wait for a standby that does not exist, or stop doing so.

    ``pg_reload_conf`` only signals the postmaster, which then signals every backend: once this
    connection's own backend shows the new setting, the gateway's backends have been signalled
    too, and each reloads before its next command.
    """
    if hang:
        await db.execute("ALTER SYSTEM SET synchronous_standby_names = 'nobody'")
    else:
        await db.execute("ALTER SYSTEM RESET synchronous_standby_names")
    await db.execute("SELECT pg_reload_conf()")
    wanted = "nobody" if hang else ""
    async with asyncio.timeout(TIMEOUT_S):
        while True:  # another process's signal: nothing to await but the next look
            if await db.fetchval("SHOW synchronous_standby_names") == wanted:
                return
            await asyncio.sleep(0.01)


async def committing_backend(db: asyncpg.Connection) -> int:
    """The pid of the backend whose COMMIT waits for the standby."""
    async with asyncio.timeout(TIMEOUT_S):
        while True:  # another process's state: nothing to await but the next look
            pid = await db.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE wait_event = 'SyncRep' LIMIT 1"
            )
            if pid is not None:
                return int(pid)
            await asyncio.sleep(0.05)


async def stored_events(db: asyncpg.Connection, message_id: str) -> list[int]:
    rows = await db.fetch(
        "SELECT stream_offset FROM cloison.events WHERE message_id = $1", message_id
    )
    return [row[0] for row in rows]


def with_traceback(log: list[str]) -> list[str]:
    """The first line of each log record that carries a traceback."""
    found: list[str] = []
    record = ""
    for line in log:
        if line[:1].isupper() and ":" in line[:10]:  # "INFO:     ...": a new record
            record = line
        elif line.startswith("Traceback") and (not found or found[-1] is not record):
            found.append(record)
    return found


async def metric(node: ServerProcess, name: str) -> float:
    async with httpx.AsyncClient(base_url=node.http_url, timeout=5) as http:
        text = (await http.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


async def store_errors_at_least(node: ServerProcess, count: int) -> bool:
    return await metric(node, "cloison_store_errors_total") >= count


pytestmark = [pytest.mark.postgres, pytest.mark.slow]


async def test_terminated_commit_is_unknown_and_still_delivered(tmp_path: Path) -> None:
    async with own_postgres() as pg, gateway_on(pg, tmp_path) as node, superuser(pg) as db:
        owner, reader_user, sphere_id = await pair(node)
        reader = await Client.connect(node.ws_url, reader_user.token)
        await reader.request(Subscribe(sphere_id=sphere_id, ref="s"))
        writer = await Client.connect(node.ws_url, owner.token)
        first = await writer.request(
            Publish(sphere_id=sphere_id, message_id="m0", body="x", ref="r1")
        )
        # Offsets 1 and 2: the sphere's creation and the reader's addition.
        assert isinstance(first, Ack) and first.offset == 3
        assert (await reader.expect(Message)).offset == 3

        await hang_commits(db, True)
        await writer.send(Publish(sphere_id=sphere_id, message_id="m1", body="y", ref="m1"))
        await db.execute("SELECT pg_terminate_backend($1)", await committing_backend(db))
        reply = await writer.expect(ErrorReply, ref="m1")
        assert (reply.code, reply.retryable) == ("unknown", True)
        assert "retry with the same message_id" in reply.message
        # It was committed: the subscriber gets it with no further write from anyone.
        delivered = await reader.expect(Message)
        assert (delivered.offset, delivered.message_id) == (4, "m1")
        assert await stored_events(db, "m1") == [4]

        await hang_commits(db, False)
        again = await writer.request(
            Publish(sphere_id=sphere_id, message_id="m1", body="y", ref="r2")
        )
        assert isinstance(again, Ack)
        assert (again.offset, again.duplicate) == (4, True)
        later = await writer.request(
            Publish(sphere_id=sphere_id, message_id="m2", body="z", ref="r3")
        )
        assert isinstance(later, Ack) and (later.offset, later.duplicate) == (5, False)
        assert (await reader.expect(Message)).offset == 5  # the re-sent m1 is not repeated
    log = "".join(node.log)
    assert "Traceback" not in log
    assert log.count("group commits are failing") == 1


async def test_timed_out_commit_is_unknown_and_the_sdk_retries_it(tmp_path: Path) -> None:
    async with own_postgres() as pg, gateway_on(pg, tmp_path) as node, superuser(pg) as db:
        owner, _, sphere_id = await pair(node)
        other_sphere = await owner.create_sphere("other")  # its own counter row, so no lock wait
        bare = await Client.connect(node.ws_url, owner.token)
        await hang_commits(db, True)
        started = time.monotonic()
        reply = await bare.request(
            Publish(sphere_id=sphere_id, message_id="slow", body="x", ref="slow"),
            timeout_s=COMMIT_TIMEOUT_BOUND_S,
        )
        assert isinstance(reply, ErrorReply)
        assert (reply.code, reply.retryable) == ("unknown", True)
        assert time.monotonic() - started < COMMIT_TIMEOUT_BOUND_S

        # The SDK retries `unknown` with the same message_id until the database answers.
        async with SdkClient(node.ws_url, owner.token, backoff=Backoff(0.2, 1.0)) as sdk:
            publishing = asyncio.create_task(sdk.publish(other_sphere, "y", message_id="sdk"))
            # Told `unknown` (the second store error of the test), it sends the write again.
            await eventually(lambda: store_errors_at_least(node, 2), COMMIT_TIMEOUT_BOUND_S)
            await hang_commits(db, False)
            async with asyncio.timeout(COMMIT_TIMEOUT_BOUND_S * 2):
                ack = await publishing
        # Both commits were in doubt, and both landed once the wait ended.
        # Offset 1 of each sphere is its creation (and 2 bob's addition to the pair's).
        assert (ack.offset, ack.duplicate) == (2, True)
        assert await stored_events(db, "sdk") == [2]
        assert await stored_events(db, "slow") == [3]
    log = "".join(node.log)
    assert "Traceback" not in log
    assert "outcome unknown" in log


async def test_terminated_backends_under_load_lose_nothing_and_say_so(tmp_path: Path) -> None:
    # Every database session of the gateway is terminated, again and again, while clients
    # write (retrying as the protocol says) and read history. No error may be `internal`, and
    # at the end every write is stored exactly once and delivered in order.
    async with own_postgres() as pg, gateway_on(pg, tmp_path) as node, superuser(pg) as db:
        owner, reader_user, sphere_id = await pair(node)
        reader = await Client.connect(node.ws_url, reader_user.token)
        await reader.request(Subscribe(sphere_id=sphere_id, ref="s"))
        writers = [await Client.connect(node.ws_url, owner.token) for _ in range(4)]
        browser = await Client.connect(node.ws_url, reader_user.token)
        codes: list[str] = []
        going = True

        async def write(client: Client, tag: int) -> list[int]:
            offsets = []
            for n in range(WRITES_PER_WRITER):
                while True:  # resend with the same message_id until acknowledged
                    reply = await client.request(
                        Publish(sphere_id=sphere_id, message_id=f"{tag}-{n}", body="x", ref=f"{n}"),
                        timeout_s=COMMIT_TIMEOUT_BOUND_S,
                    )
                    if isinstance(reply, Ack):
                        offsets.append(reply.offset)
                        break
                    assert isinstance(reply, ErrorReply) and reply.retryable, reply
                    codes.append(reply.code)
                    await asyncio.sleep(0.05)
            return offsets

        async def browse() -> None:
            n = 0
            while going:
                n += 1
                reply = await browser.request(History(sphere_id=sphere_id, ref=f"h{n}"))
                if isinstance(reply, ErrorReply):
                    codes.append(reply.code)

        async def terminate() -> int:
            terminated = 0
            while going:
                terminated += await db.fetchval(
                    """
                    SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                    WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
                    """
                )
                await asyncio.sleep(TERMINATE_EVERY_S)
            return terminated

        async with asyncio.timeout(120):
            killer = asyncio.create_task(terminate())
            reading = asyncio.create_task(browse())
            results = await asyncio.gather(*(write(w, i) for i, w in enumerate(writers)))
            going = False
            terminated = await killer
            await reading
        acked = sorted(offset for offsets in results for offset in offsets)
        total = WRITES_PER_WRITER * len(writers)
        # Each stored once, no gap, after the sphere's creation and the reader's addition.
        assert acked == list(range(3, total + 3))
        delivered = [(await reader.expect(Message, timeout_s=30)).offset for _ in range(total)]
        assert delivered == acked
        assert await db.fetchval("SELECT count(*) FROM cloison.events WHERE kind = 'post'") == total
    counts = {code: codes.count(code) for code in sorted(set(codes))}
    print(  # noqa: T201 - the figure docs/reliability.md quotes (run with -s)
        f"{terminated} backends terminated under {total} writes: error codes {counts}"
    )
    assert "internal" not in counts
    assert set(counts) <= {"unavailable", "unknown"}
    assert "request failed" not in "".join(node.log)  # the gateway's path to `internal`
    assert [r for r in with_traceback(node.log) if _REPAIR_FAILURES not in r] == []


# ---------------------------------------------------------------------------------------------
# A data directory that cannot take writes: read-only, or full


def chattr(flag: str, *paths: Path) -> None:
    subprocess.run(["chattr", flag, *map(str, paths)], check=True, capture_output=True)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("chattr") is None, reason="needs root")
async def test_read_only_database_is_not_ready(tmp_path: Path) -> None:
    # Root ignores file modes; the immutable flag stops even root (EPERM on every write), as a
    # read-only mount would. The shared-memory file is left alone: SQLite maps it, and a write
    # to an immutable mapping is a SIGBUS, not an error.
    node = start_server(tmp_path)
    database = node.data_dir / "cloison.sqlite3"
    files = [database, database.with_name(database.name + "-wal")]
    try:
        owner, _, sphere_id = await pair(node)
        writer = await Client.connect(node.ws_url, owner.token)
        async with httpx.AsyncClient(base_url=node.http_url, timeout=5) as http:
            assert (await http.get("/readyz")).status_code == 200
            try:
                await asyncio.to_thread(chattr, "+i", *files)
            except (OSError, subprocess.CalledProcessError) as exc:
                pytest.skip(f"this file system has no immutable flag: {exc}")
            try:
                readiness = await http.get("/readyz")
                assert readiness.status_code == 503
                assert readiness.json() == {
                    "ready": False,
                    "store": False,
                    "broker": True,
                    "reasons": [f"store: {str(database)!r} is not writable"],
                }
                refused = await writer.request(
                    Publish(sphere_id=sphere_id, message_id="ro", body="x", ref="r4")
                )
                # The write to the log failed, so the commit certainly did not happen.
                assert isinstance(refused, ErrorReply) and refused.code == "unavailable"
            finally:
                await asyncio.to_thread(chattr, "-i", *files)
            assert (await http.get("/readyz")).status_code == 200
            after = await writer.request(
                Publish(sphere_id=sphere_id, message_id="ro", body="x", ref="r5")
            )
            assert isinstance(after, Ack) and not after.duplicate
    finally:
        node.stop()
    assert "".join(node.log).count("group commits are failing") == 1


def mount_tmpfs(where: Path, size: str) -> subprocess.CompletedProcess[str]:
    command = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def fill(path: Path) -> None:
    """Write zeros to ``path`` until the file system has no space left."""
    with contextlib.suppress(OSError), path.open("wb") as out:  # ENOSPC: full, as wanted
        while True:
            out.write(b"\0" * 65536)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None, reason="needs root")
async def test_a_full_disk_fails_writes_certainly_and_logs_once(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = await asyncio.to_thread(mount_tmpfs, disk, "8m")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        node = start_server(disk)
        try:
            owner, _, sphere_id = await pair(node)
            writer = await Client.connect(node.ws_url, owner.token)
            body = "x" * 4000
            filler = disk / "filler"
            await asyncio.to_thread(fill, filler)
            refused: list[str] = []
            for n in range(200):  # until the database has no page left to grow into
                reply = await writer.request(
                    Publish(sphere_id=sphere_id, message_id=f"f{n}", body=body, ref=str(n))
                )
                if isinstance(reply, ErrorReply):
                    refused.append(reply.code)
            assert refused, "the disk never filled up"
            assert set(refused) == {"unavailable"}  # SQLITE_FULL rolls back: not "unknown"
            assert await metric(node, "cloison_store_failed_commits") >= len(refused)
            assert await metric(node, "cloison_store_unknown_commits") == 0
            filler.unlink()
            again = await writer.request(
                Publish(sphere_id=sphere_id, message_id="after", body="y", ref="after")
            )
            assert isinstance(again, Ack) and not again.duplicate
        finally:
            node.stop()
    finally:
        await asyncio.to_thread(subprocess.run, ["umount", "-l", str(disk)], check=False)
    log = "".join(node.log)
    assert log.count("group commits are failing") == 1
    assert log.count("group commits succeed again") == 1
    assert with_traceback(node.log) == []
