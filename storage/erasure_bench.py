"""What erasure costs: a PostgreSQL compaction, and the scrub behind a SQLite delete.

    python -m storage.erasure_bench [--events N] [--deletes D] [--url postgresql://...]

Fills a store with N posts (random 80-character bodies), then:

- PostgreSQL (``--url``, in a schema of its own, dropped at the end): deletes D of them, then
  compacts the schema while one task appends posts one after another, and prints how long each
  table's rewrite took, the sizes before and after, and the longest append meanwhile (how long
  the compaction held appends up).
- SQLite (no ``--url``; a temporary file): deletes D posts one at a time, each with posts
  between, and prints the latency of a delete's acknowledgement (its checkpoint included)
  beside that of a post; then runs 20 appenders and 4 history readers for 5 s, without and
  with a delete every 50 ms, and prints the throughput and latency of the posts.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg

from protocol import EventKind, MessageId, Privacy, SphereId, UserId, UserKind
from storage.base import Draft, Store, StoreError
from storage.bench import positive
from storage.postgres import PostgresStore
from storage.sqlite import SqliteStore

# Appends in flight while the store is filled.
FILL_WRITERS = 100
# Time allowed for the whole run; a stalled database fails the benchmark rather than hang it.
RUN_TIMEOUT_S = 900.0
# The SQLite load phase: appenders and history readers for LOAD_S, with and without deletes.
LOAD_WRITERS = 20
LOAD_READERS = 4
LOAD_S = 5.0
DELETE_EVERY_S = 0.05


async def _fill(store: Store, events: int) -> tuple[UserId, SphereId, list[int]]:
    now_ms = time.time_ns() // 1_000_000
    user = await store.create_user("bench", UserKind.BOT, is_admin=False, now_ms=now_ms)
    sphere = await store.create_sphere("bench", Privacy.PRIVATE, user.user_id, now_ms=now_ms)
    tickets = iter(range(events))
    offsets: list[int] = []

    async def writer() -> None:
        for n in tickets:
            result = await store.append(sphere.sphere_id, _post(user.user_id, f"m{n}"))
            offsets.append(result.event.offset)

    async with asyncio.TaskGroup() as group:
        for _ in range(FILL_WRITERS):
            group.create_task(writer())
    return user.user_id, sphere.sphere_id, sorted(offsets)


def _post(author: UserId, message_id: str) -> Draft:
    body = secrets.token_urlsafe(60)  # 80 characters
    return Draft(EventKind.POST, MessageId(message_id), author, time.time_ns() // 1_000_000, body)


def _delete(author: UserId, target: int) -> Draft:
    draft_id = MessageId(f"d{target}")
    return Draft(EventKind.DELETE, draft_id, author, time.time_ns() // 1_000_000, target=target)


async def _postgres(url: str, args: argparse.Namespace) -> str:
    schema = f"cloison_bench_{secrets.token_hex(6)}"
    try:
        store = await PostgresStore.open(url, schema=schema)
        try:
            author, sphere_id, offsets = await _fill(store, args.events)
            for target in offsets[:: max(1, len(offsets) // args.deletes)][: args.deletes]:
                await store.append(sphere_id, _delete(author, target))
            waits: list[float] = []
            failed = 0
            compacting = True

            async def appender() -> None:
                nonlocal failed
                n = 0
                while compacting:
                    started = time.perf_counter()
                    try:
                        await store.append(sphere_id, _post(author, f"c{n}"))
                    except StoreError:  # timed out behind the table's lock: a figure too
                        failed += 1
                    waits.append(time.perf_counter() - started)
                    n += 1

            task = asyncio.create_task(appender())
            try:
                report = await store.compact()
            finally:
                compacting = False
                await task
        finally:
            await store.aclose()
    finally:
        db = await asyncpg.connect(url)
        try:
            await db.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await db.close()
    lines = [
        f"postgres compaction: {args.events} posts, {args.deletes} deleted,"
        f" {report.seconds:.2f} s for {len(report.tables)} tables"
    ]
    for table in sorted(report.tables, key=lambda t: -t.seconds)[:4]:
        lines.append(
            f"  {table.table:<18} {table.seconds * 1e3:8.1f} ms"
            f"  {table.bytes_before / 2**20:7.1f} MiB -> {table.bytes_after / 2**20:7.1f} MiB"
            + (f"  skipped ({table.skipped})" if table.skipped else "")
        )
    lines.append(
        f"  appends meanwhile {len(waits)} ({failed} failed), longest"
        f" {max(waits, default=0.0) * 1e3:.0f} ms,"
        f" median {statistics.median(waits) * 1e3 if waits else 0.0:.1f} ms"
    )
    return "\n".join(lines)


async def _sqlite(path: Path, args: argparse.Namespace) -> str:
    store = await SqliteStore.open(path)
    try:
        author, sphere_id, offsets = await _fill(store, args.events)
        posts: list[float] = []
        deletes: list[float] = []
        chosen = offsets[:: max(1, len(offsets) // args.deletes)][: args.deletes]
        for n, target in enumerate(chosen):
            for m in range(10):  # posts between deletes: frames for the checkpoint to copy
                started = time.perf_counter()
                await store.append(sphere_id, _post(author, f"x{n}-{m}"))
                posts.append(time.perf_counter() - started)
            started = time.perf_counter()
            await store.append(sphere_id, _delete(author, target))
            deletes.append(time.perf_counter() - started)
        stats = store.erasure_stats
        lines = [
            f"sqlite scrub: {args.events} posts, {len(deletes)} deletes one at a time",
            f"  post ack    p50 {_ms(posts, 50)}, p99 {_ms(posts, 99)}",
            f"  delete ack  p50 {_ms(deletes, 50)}, p99 {_ms(deletes, 99)} (checkpoint included)",
            f"  scrubs      {stats.scrubs} completed, pending at the end: {stats.scrub_pending}",
        ]
        deleted = set(chosen)
        rest = (offset for offset in offsets if offset not in deleted)
        for deleting in (False, True):
            lines.append(await _under_load(store, author, sphere_id, rest if deleting else None))
    finally:
        await store.aclose()
    return "\n".join(lines)


async def _under_load(
    store: Store, author: UserId, sphere_id: SphereId, targets: Iterator[int] | None
) -> str:
    """LOAD_WRITERS appenders and LOAD_READERS history readers for LOAD_S; with ``targets``,
    a delete of the next one every DELETE_EVERY_S (each followed by its checkpoint)."""
    stop = time.monotonic() + LOAD_S
    latencies: list[float] = []
    scrubs = store.erasure_stats.scrubs
    tag = secrets.token_hex(4)

    async def writer(w: int) -> None:
        n = 0
        while time.monotonic() < stop:
            started = time.perf_counter()
            await store.append(sphere_id, _post(author, f"{tag}-{w}-{n}"))
            latencies.append(time.perf_counter() - started)
            n += 1

    async def reader() -> None:
        while time.monotonic() < stop:
            await store.history(sphere_id, before=None, after=None, limit=100)

    async def deleter() -> None:
        for target in targets or ():
            if time.monotonic() >= stop:
                return
            await store.append(sphere_id, _delete(author, target))
            await asyncio.sleep(DELETE_EVERY_S)

    async with asyncio.TaskGroup() as group:
        for w in range(LOAD_WRITERS):
            group.create_task(writer(w))
        for _ in range(LOAD_READERS):
            group.create_task(reader())
        group.create_task(deleter())
    what = f"a delete every {DELETE_EVERY_S * 1e3:.0f} ms" if targets else "no delete"
    return (
        f"  under load, {what}: {len(latencies) / LOAD_S:,.0f} posts/s ({LOAD_WRITERS} writers,"
        f" {LOAD_READERS} history readers), ack p50 {_ms(latencies, 50)},"
        f" p99 {_ms(latencies, 99)}; scrubs {store.erasure_stats.scrubs - scrubs},"
        f" pending {store.erasure_stats.scrub_pending}"
    )


def _ms(samples: list[float], percentile: int) -> str:
    if len(samples) < 2:
        return f"{samples[0] * 1e3:.2f} ms" if samples else "-"
    return f"{statistics.quantiles(samples, n=100)[percentile - 1] * 1e3:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m storage.erasure_bench", description=__doc__)
    parser.add_argument("--events", type=positive, default=100_000, help="posts to store")
    parser.add_argument("--deletes", type=positive, default=100, help="posts to delete")
    parser.add_argument("--url", help="a postgresql:// database (a superuser's or the owner's)")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the SQLite file")
    args = parser.parse_args()

    async def run() -> str:
        async with asyncio.timeout(RUN_TIMEOUT_S):
            if args.url is not None:
                return await _postgres(args.url, args)
            with tempfile.TemporaryDirectory(prefix="cloison-bench-", dir=args.dir) as tmp:
                return await _sqlite(Path(tmp) / "bench.sqlite3", args)

    print(asyncio.run(run()))


if __name__ == "__main__":
    main()
