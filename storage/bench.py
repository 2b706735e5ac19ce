"""Durable ingest benchmark of a store: many concurrent appenders, group commit.

    python -m storage.bench [--messages N] [--writers W] [--spheres S] [--seconds T]
                            [--synchronous FULL|NORMAL] [--dir PATH] [--url postgresql://...]

W tasks each append posts one after another, awaiting every acknowledgement, to S spheres in
turn, until N posts are acknowledged or T seconds have passed. Prints the throughput, the mean
number of appends per commit and the p50/p99 latency of an append, then checks that the
spheres' offsets add up to the posts acknowledged. The SQLite database lives in a temporary
directory (under ``--dir``, so the benchmark measures that disk) which is removed at the end.
With ``--url``, the benchmark uses that PostgreSQL database instead, in a schema of its own that
is dropped at the end.
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

from protocol import EventKind, MessageId, Privacy, UserKind
from storage.base import Draft
from storage.postgres import PostgresStore
from storage.sqlite import SqliteStore

# Time allowed beyond --seconds for the appends in flight and for closing.
GRACE_S = 30.0


async def _bench(path: Path, args: argparse.Namespace) -> tuple[str, bool]:
    async with asyncio.timeout(args.seconds + GRACE_S):
        store = await SqliteStore.open(path, synchronous=args.synchronous)
        try:
            return await _run(store, args, f"sqlite ingest, synchronous={args.synchronous}")
        finally:
            await store.aclose()


async def _bench_postgres(url: str, args: argparse.Namespace) -> tuple[str, bool]:
    schema = f"cloison_bench_{secrets.token_hex(6)}"
    async with asyncio.timeout(args.seconds + GRACE_S):
        try:
            store = await PostgresStore.open(url, schema=schema)
            try:
                return await _run(store, args, "postgres ingest")
            finally:
                await store.aclose()
        finally:
            db = await asyncpg.connect(url)
            try:
                await db.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            finally:
                await db.close()


async def _run(
    store: SqliteStore | PostgresStore, args: argparse.Namespace, title: str
) -> tuple[str, bool]:
    """Run the appenders; return the report and whether the stored offsets add up."""
    now_ms = time.time_ns() // 1_000_000
    user = await store.create_user("bench", UserKind.BOT, is_admin=False, now_ms=now_ms)
    spheres = [
        (await store.create_sphere(f"bench-{n}", Privacy.PRIVATE, user.user_id, now_ms=now_ms))
        for n in range(args.spheres)
    ]
    tickets = iter(range(args.messages))  # shared: each post is taken by one writer
    latencies_s: list[float] = []
    deadline = time.perf_counter() + args.seconds

    async def writer() -> None:
        for n in _until(tickets, deadline):
            draft = Draft(EventKind.POST, MessageId(f"m{n}"), user.user_id, now_ms, "x" * 80)
            started = time.perf_counter()
            await store.append(spheres[n % len(spheres)].sphere_id, draft)
            latencies_s.append(time.perf_counter() - started)

    before = store.writer_stats
    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(args.writers):
            group.create_task(writer())
    elapsed_s = time.perf_counter() - started
    after = store.writer_stats

    acked = len(latencies_s)
    stored = 0
    for sphere in spheres:
        record = await store.get_sphere(sphere.sphere_id)
        # Minus the offset a new sphere starts at (its owner's member event).
        stored += record.offset - sphere.offset if record else 0
    commits = after.commits - before.commits
    percentiles = statistics.quantiles(latencies_s, n=100) if acked > 1 else [0.0] * 99
    report = "\n".join(
        [
            f"{title}: {acked} posts in {elapsed_s:.2f} s,"
            f" {args.writers} writers, {args.spheres} spheres",
            f"  throughput  {acked / elapsed_s:,.0f} messages/s",
            f"  batch size  {(after.appends - before.appends) / max(commits, 1):.1f}"
            f" appends per commit ({commits} commits)",
            f"  latency     p50 {percentiles[49] * 1e3:.2f} ms, p99 {percentiles[98] * 1e3:.2f} ms",
            f"  check       {'ok' if stored == acked else 'FAILED'}:"
            f" offsets add up to {stored} of {acked} acknowledged",
        ]
    )
    return report, stored == acked


def _until(tickets: Iterator[int], deadline: float) -> Iterator[int]:
    for n in tickets:
        if time.perf_counter() >= deadline:
            return
        yield n


def positive(text: str) -> int:
    """An argparse type: an integer of at least 1 (the benchmarks' counts)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m storage.bench", description=__doc__)
    parser.add_argument(
        "--messages", type=positive, default=200_000, help="posts to append at most"
    )
    parser.add_argument("--writers", type=positive, default=200, help="concurrent appending tasks")
    parser.add_argument(
        "--spheres", type=positive, default=10, help="spheres the posts spread over"
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="time limit of the appends")
    parser.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the temporary db")
    parser.add_argument("--url", help="a postgresql:// database to use instead of SQLite")
    args = parser.parse_args()
    if args.url is not None:
        report, ok = asyncio.run(_bench_postgres(args.url, args))
    else:
        with tempfile.TemporaryDirectory(prefix="cloison-bench-", dir=args.dir) as tmp:
            report, ok = asyncio.run(_bench(Path(tmp) / "bench.sqlite3", args))
    print(report)
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
