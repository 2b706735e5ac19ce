"""The scale of a platform: reads of the sign-in, directory and sphere paths, at size.

    python -m storage.org_bench [--orgs 20000] [--users 400000] [--samples 2000]
                                [--url postgresql://...] [--engines postgres,sqlite]
                                [--dir PATH] [--seed N]

Seeds, with bulk SQL (PostgreSQL ``COPY``, SQLite ``executemany`` in one transaction), a
population with a realistic skew: most organisations have 5 to 50 members, one in 2,000 has
thousands; one sphere per five members (at least one, at most 200), each member in one to four
of them, everyone of a small organisation in its first; one user in twenty belongs to a second
organisation; a few posts per sphere; one token per user. PostgreSQL gets the organisations as
they are (in a schema of its own, dropped at the end); SQLite gets the same users, teams and
spheres in one organisation (a single-organisation install).

Then measures, through the ``Store`` API and one call at a time, the p50 and p99 latency of
each read for ``--samples`` random users: the sign-in path (token, user, organisations), a
user's record (the credentials lookup), the organisation directory (a page, and a name-prefix
search), a user's spheres, a sphere membership check, an organisation role, and a user's
organisations. Prints a table; exits 1 if a call misses ``--target-ms`` at p99.

``explain`` (used by the suite at a small size) records the statements those calls run and
checks, with ``EXPLAIN`` / ``EXPLAIN QUERY PLAN``, that none reads a large table whole.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import re
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from protocol import OrgId, SphereId, UserId
from storage.base import Store
from storage.postgres import PostgresStore
from storage.sql.dialect import Dialect
from storage.sqlite import SqliteStore

T0 = 1_700_000_000_000
# The tables a call must never read whole (the others are small, or read by key).
BIG_TABLES = (
    "users",
    "tokens",
    "members",
    "org_members",
    "organisations",
    "spheres",
    "events",
    "credentials",
)
PAGE = 50
NAME_PARTS = ("al", "be", "ca", "da", "el", "fa", "ga", "ha", "io", "ju", "ka", "li", "mo")


@dataclass
class Population:
    """Rows to seed, as tuples in the column order of ``COLUMNS``."""

    orgs: list[tuple[Any, ...]] = field(default_factory=list)
    users: list[tuple[Any, ...]] = field(default_factory=list)
    tokens: list[tuple[Any, ...]] = field(default_factory=list)
    org_members: list[tuple[Any, ...]] = field(default_factory=list)
    spheres: list[tuple[Any, ...]] = field(default_factory=list)
    members: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    credentials: list[tuple[Any, ...]] = field(default_factory=list)  # where the table exists
    # For the samples: (user_id, token_id, org_id, a sphere of theirs).
    people: list[tuple[str, str, str, str]] = field(default_factory=list)
    org_ids: list[str] = field(default_factory=list)


COLUMNS = {
    "organisations": ("org_id", "name", "created_ms", "policies"),
    "users": ("user_id", "name", "kind", "is_admin", "created_ms"),
    "tokens": ("token_id", "user_id", "secret_hash", "created_ms", "revoked", "kind"),
    # name_key: the directory's folded name (migration 0013), where the column exists.
    "org_members": ("org_id", "user_id", "role", "joined_ms", "name_key"),
    "spheres": ("sphere_id", "org_id", "name", "privacy", "epoch", "last_offset", "created_ms"),
    "members": ("sphere_id", "user_id", "role", "joined_ms", "history_from"),
    "events": ("sphere_id", "stream_offset", "kind", "message_id", "author_id", "ts_ms", "body"),
    "credentials": ("user_id", "email", "email_key", "created_ms"),
}


def email(user_id: str) -> str:
    return f"{user_id}@bench.example"


def org_sizes(orgs: int, users: int, rng: random.Random) -> list[int]:
    """Members per organisation, summing to ``users``: one in 2,000 has thousands."""
    big = max(1, orgs // 2000)
    sizes = [min(rng.randint(2000, 5000), users // 10) for _ in range(big)]
    budget = max(users - sum(sizes), 5 * (orgs - big))
    small = [int(rng.triangular(5, 50, 12)) for _ in range(orgs - big)]
    scale = budget / max(1, sum(small))
    small = [max(5, round(n * scale)) for n in small]
    sizes += small
    sizes[-1] += users - sum(sizes)  # exact
    sizes[-1] = max(1, sizes[-1])
    return sizes


def populate(orgs: int, users: int, *, seed: int, one_org: str | None = None) -> Population:
    """The population; with ``one_org``, every team is of that one organisation."""
    rng = random.Random(seed)
    pop = Population()
    user_index = 0
    teams = org_sizes(orgs, users, rng)
    posts_per_sphere = 3
    for team, size in enumerate(teams):
        org_id = one_org or f"o{team:06d}"
        if one_org is None or team == 0:
            pop.orgs.append((org_id, f"Org {team}", T0, "{}"))
            pop.org_ids.append(org_id)
        spheres = [f"s{team:06d}_{n:03d}" for n in range(min(200, max(1, size // 5)))]
        for n, sphere_id in enumerate(spheres):
            pop.spheres.append((sphere_id, org_id, f"Sphere {n}", "private", "e", 0, T0))
        team_users: list[tuple[str, str]] = []
        for _ in range(size):
            user_id = f"u{user_index:07d}"
            name = "".join(rng.choice(NAME_PARTS) for _ in range(3)) + f" {user_index}"
            token_id = secrets.token_hex(8)
            pop.users.append((user_id, name, "human", False, T0))
            pop.tokens.append((token_id, user_id, hashlib.sha256(token_id.encode()).digest(),
                               T0, False, "session"))  # fmt: skip
            role = "manager" if not team_users else "member"
            pop.org_members.append((org_id, user_id, role, T0, name.lower()))
            pop.credentials.append((user_id, email(user_id), email(user_id), T0))
            team_users.append((user_id, token_id))
            user_index += 1
        offsets: dict[str, int] = {}
        for position, (user_id, token_id) in enumerate(team_users):
            mine = set(rng.sample(spheres, min(len(spheres), rng.randint(1, 4))))
            if size <= 50:
                mine.add(spheres[0])
            for sphere_id in sorted(mine):
                role = "owner" if position == 0 else "member"
                pop.members.append((sphere_id, user_id, role, T0, 1))
            pop.people.append((user_id, token_id, org_id, sorted(mine)[0]))
        for sphere_id in spheres:
            for _ in range(posts_per_sphere):
                author = rng.choice(team_users)[0]
                offset = offsets[sphere_id] = offsets.get(sphere_id, 0) + 1
                body = f"post {offset}"
                pop.events.append((sphere_id, offset, "post", f"m{offset}", author, T0, body))
        pop.spheres[-len(spheres) :] = [
            (*row[:5], offsets.get(row[0], 0), row[6]) for row in pop.spheres[-len(spheres) :]
        ]
    if one_org is None:
        # One user in twenty also belongs to a second organisation.
        names = {row[0]: row[1] for row in pop.users}
        for user_id, _, org_id, _ in rng.sample(pop.people, len(pop.people) // 20):
            other = rng.choice(pop.org_ids)
            if other != org_id:
                pop.org_members.append((other, user_id, "member", T0, names[user_id].lower()))
    return pop


# -- seeding -----------------------------------------------------------------------------------


def _present(
    columns: Sequence[str], have: set[str], rows: list[tuple[Any, ...]]
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The columns of ``COLUMNS`` this store's schema has, and the rows cut to them."""
    keep = [n for n, column in enumerate(columns) if column in have]
    if len(keep) == len(columns):
        return list(columns), rows
    return [columns[n] for n in keep], [tuple(row[n] for n in keep) for row in rows]


def seed_sqlite(path: Path, pop: Population) -> None:
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA synchronous = OFF")
        present = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        with db:
            for table, rows in _tables(pop):
                if table not in present:
                    continue
                have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                columns, cut = _present(COLUMNS[table], have, rows)
                marks = ", ".join("?" * len(columns))
                db.executemany(
                    f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) VALUES ({marks})", cut
                )
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()


async def seed_postgres(url: str, schema: str, pop: Population) -> None:
    # The schema's own search path: its triggers name its tables unqualified.
    db = await asyncpg.connect(url, server_settings={"search_path": schema})
    try:
        # The rows are whole already (the directory's name_key included): no per-row trigger.
        await db.execute("SET session_replication_role = replica")
        seeded = []
        for table, rows in _tables(pop):
            have = {
                row[0]
                for row in await db.fetch(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = $1 AND table_name = $2",
                    schema,
                    table,
                )
            }
            if not have:
                continue  # a table of a later migration than this store has
            columns, cut = _present(COLUMNS[table], have, rows)
            await db.copy_records_to_table(table, records=cut, columns=columns, schema_name=schema)
            seeded.append(f"{schema}.{table}")
        # As autovacuum would have, on a store that grew to this size.
        await db.execute("ANALYZE " + ", ".join(seeded))
    finally:
        await db.close()


def _tables(pop: Population) -> Iterator[tuple[str, list[tuple[Any, ...]]]]:
    yield "organisations", pop.orgs
    yield "users", pop.users
    yield "tokens", pop.tokens
    yield "org_members", pop.org_members
    yield "spheres", pop.spheres
    yield "members", pop.members
    yield "events", pop.events
    yield "credentials", pop.credentials


# -- the calls ---------------------------------------------------------------------------------

Call = Callable[[Store, tuple[str, str, str, str]], Awaitable[Any]]

# The organisation directory's name-prefix search as it is expected to run: the members of the
# organisation whose name starts with the prefix, by name (a range, so an index can serve it).
DIRECTORY_SEARCH = """
    SELECT m.user_id, u.name, m.role FROM org_members AS m
    JOIN users AS u ON u.user_id = m.user_id
    WHERE m.org_id = ? AND u.name >= ? AND u.name < ?
    ORDER BY u.name LIMIT ?
"""


async def _sign_in(store: Store, who: tuple[str, str, str, str]) -> None:
    token = await store.get_token(who[1])
    assert token is not None
    user = await store.get_user(token.user_id)
    assert user is not None
    await store.user_orgs(user.user_id)


async def _credentials(store: Store, who: tuple[str, str, str, str]) -> None:
    by_email = getattr(store, "credentials_by_email", None)  # the sign-in table, where it is
    if by_email is not None:
        await by_email(email(who[0]))
    else:
        await store.get_user(UserId(who[0]))


async def _directory(store: Store, who: tuple[str, str, str, str]) -> None:
    lister = getattr(store, "list_org_members", None)  # the directory, where it exists
    if lister is not None:
        await lister(OrgId(who[2]), query=None, limit=PAGE)
    else:
        await store.org_members_after(OrgId(who[2]), after=None, limit=PAGE)


async def _search(store: Store, who: tuple[str, str, str, str]) -> None:
    prefix = NAME_PARTS[int(who[0][1:]) % len(NAME_PARTS)]
    lister = getattr(store, "list_org_members", None)
    if lister is not None:
        await lister(OrgId(who[2]), query=prefix, limit=PAGE)
        return
    sql = store._dialect.render(DIRECTORY_SEARCH)  # type: ignore[attr-defined]
    await store._query(sql, who[2], prefix, prefix + "\uffff", PAGE)  # type: ignore[attr-defined]


SEARCH = "org directory search"
CALLS: dict[str, Call] = {
    "sign-in (token, user, orgs)": _sign_in,
    "credentials (by e-mail)": _credentials,
    "org directory page": _directory,
    SEARCH: _search,
    "user_spheres": lambda s, w: s.user_spheres(UserId(w[0]), limit=PAGE),
    "sphere_standing": lambda s, w: s.sphere_standing(SphereId(w[3]), UserId(w[0])),
    "org_role": lambda s, w: s.org_role(OrgId(w[2]), UserId(w[0])),
    "user_orgs": lambda s, w: s.user_orgs(UserId(w[0])),
}


Figures = dict[str, tuple[float, ...]]


def _bounded(
    store: Store, name: str, chosen: list[tuple[str, str, str, str]]
) -> list[tuple[str, str, str, str]]:
    """The samples of a call; the stand-in of the directory search (no ``list_org_members``
    in this store) reads a whole large organisation each time: a twentieth of them, so the
    run stays bounded."""
    if name == SEARCH and not hasattr(store, "list_org_members"):
        return chosen[: max(20, len(chosen) // 20)]
    return chosen


def _percentiles(times: list[float]) -> tuple[float, float, float]:
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))], times[-1]


async def measure(
    store: Store, people: Sequence[tuple[str, str, str, str]], samples: int, seed: int
) -> Figures:
    """p50, p99 and max (ms) of each call, one at a time, for random people."""
    rng = random.Random(seed)
    chosen = [rng.choice(people) for _ in range(samples)]
    for who in chosen[: max(1, samples // 10)]:  # warm the caches and the connections
        for call in CALLS.values():
            await call(store, who)
    results: Figures = {}
    for name, call in CALLS.items():
        times = []
        for who in _bounded(store, name, chosen):
            start = time.perf_counter()
            await call(store, who)
            times.append((time.perf_counter() - start) * 1000)
        results[name] = _percentiles(times)
    return results


async def database_time(
    store: Store,
    url: str,
    schema: str,
    people: Sequence[tuple[str, str, str, str]],
    samples: int,
    seed: int,
) -> Figures:
    """p50 and p99 (ms) of what PostgreSQL itself spends on each call: the planning and
    execution times ``EXPLAIN (ANALYZE)`` reports for its statements, summed. On a loaded
    machine the wall-clock figures add the waits for a CPU; these do not."""
    rng = random.Random(seed + 1)
    chosen = [rng.choice(people) for _ in range(samples)]
    db = await asyncpg.connect(url, server_settings={"search_path": schema})
    dialect: Dialect = store._dialect  # type: ignore[attr-defined]
    try:
        results: Figures = {}
        for name, call in CALLS.items():
            times = []
            for who in _bounded(store, name, chosen):
                statements = record_statements(store)
                await call(store, who)
                _unrecord(store)
                spent = 0.0
                for sql, args in statements:
                    explain = "EXPLAIN (ANALYZE, FORMAT JSON) " + dialect.placeholders(sql)
                    [(plan,)] = await db.fetch(explain, *args)
                    top = json.loads(plan)[0]
                    spent += top["Planning Time"] + top["Execution Time"]
                times.append(spent)
            results[name] = _percentiles(times)[:2]
        return results
    finally:
        await db.close()


# -- plans -------------------------------------------------------------------------------------


class _Recorder:
    def __init__(self, runner: Any, sink: list[tuple[str, tuple[Any, ...]]]) -> None:
        self._runner = runner
        self._sink = sink

    async def fetch(self, sql: str, *args: Any) -> Sequence[Sequence[Any]]:
        self._sink.append((sql, args))
        rows: Sequence[Sequence[Any]] = await self._runner.fetch(sql, *args)
        return rows


def record_statements(store: Store) -> list[tuple[str, tuple[Any, ...]]]:
    """From now on, the statements ``store`` reads with, and their arguments."""
    sink: list[tuple[str, tuple[Any, ...]]] = []
    query, reading = store._query, store._reading  # type: ignore[attr-defined]

    async def recorded_query(sql: str, *args: Any) -> Any:
        sink.append((sql, args))
        return await query(sql, *args)

    @asynccontextmanager
    async def recorded_reading() -> AsyncIterator[_Recorder]:
        async with reading() as db:
            yield _Recorder(db, sink)

    store._query = recorded_query  # type: ignore[attr-defined]
    store._reading = recorded_reading  # type: ignore[attr-defined]
    return sink


def _unrecord(store: Store) -> None:
    """Back to the class's own ``_query`` and ``_reading``."""
    del store._query  # type: ignore[attr-defined]
    del store._reading  # type: ignore[attr-defined]


def _aliases(sql: str) -> dict[str, str]:
    """alias -> table for the big tables a statement names."""
    found = {table: table for table in BIG_TABLES}
    for table, alias in re.findall(r"\b(\w+)\s+AS\s+(\w+)", sql, re.I):
        if table in BIG_TABLES:
            found[alias] = table
    return found


def sqlite_scans(path: Path, statements: Sequence[tuple[str, tuple[Any, ...]]]) -> list[str]:
    """The plan lines that read a big table whole: ``SCAN t``, with or without an index, or a
    skip scan (``SEARCH t USING INDEX i (ANY(a) AND b=?)``); a ``SEARCH`` is a seek."""
    db = sqlite3.connect(path)
    try:
        bad = []
        for sql, args in statements:
            aliases = _aliases(sql)
            for row in db.execute("EXPLAIN QUERY PLAN " + sql, args):
                detail = str(row[3])
                match = re.match(r"(?:SCAN|SEARCH) (\w+)(?: AS (\w+))?", detail)
                whole = detail.startswith("SCAN") or "ANY(" in detail  # ANY: a skip scan
                if match and whole and aliases.get(match.group(2) or match.group(1)):
                    bad.append(f"{detail} in: {' '.join(sql.split())[:160]}")
        return bad
    finally:
        db.close()


async def postgres_scans(
    url: str, schema: str, statements: Sequence[tuple[str, tuple[Any, ...]]], dialect: Dialect
) -> list[str]:
    """The plan nodes that read a big table whole: a ``Seq Scan``, or an index scan whose
    condition does not bound the index's first column (the whole index, or a skip scan over
    it). The planner is told to avoid sequential scans and the joins that read a side whole
    (hash, merge), so that at a small size a table is not read whole only because that is
    cheaper: what is left is whether an index serves each access."""
    db = await asyncpg.connect(url, server_settings={"search_path": schema})
    try:
        for setting in ("enable_seqscan", "enable_hashjoin", "enable_mergejoin"):
            await db.execute(f"SET {setting} = off")
        leading = {
            row[0]: row[1] for row in await db.fetch(_LEADING_COLUMNS, schema, list(BIG_TABLES))
        }
        bad = []
        for sql, args in statements:
            [(plan,)] = await db.fetch("EXPLAIN (FORMAT JSON) " + dialect.placeholders(sql), *args)
            for node in _nodes(json.loads(plan)[0]["Plan"]):
                table = node.get("Relation Name")
                kind = node["Node Type"]
                if kind == "Seq Scan" and table in BIG_TABLES:
                    bad.append(f"{kind} on {table} in: {' '.join(sql.split())[:160]}")
                index = node.get("Index Name")
                if index is None or kind == "Bitmap Heap Scan" or index not in leading:
                    continue
                condition = node.get("Index Cond", "")
                if not re.search(rf"\b{leading[index]}\b", condition):
                    bad.append(
                        f"{kind} using {index} without its first column ({condition or 'none'})"
                        f" in: {' '.join(sql.split())[:160]}"
                    )
        return bad
    finally:
        await db.close()


# Each index of the big tables of a schema, with its first column.
_LEADING_COLUMNS = """
    SELECT i.relname, a.attname FROM pg_index AS x
    JOIN pg_class AS i ON i.oid = x.indexrelid
    JOIN pg_class AS t ON t.oid = x.indrelid
    JOIN pg_namespace AS n ON n.oid = t.relnamespace
    JOIN pg_attribute AS a ON a.attrelid = t.oid AND a.attnum = x.indkey[0]
    WHERE n.nspname = $1 AND t.relname = ANY($2::text[])
"""


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from _nodes(child)


# -- running -----------------------------------------------------------------------------------


async def run_postgres(
    url: str, pop: Population, args: argparse.Namespace
) -> tuple[Figures, float, list[str]]:
    schema = f"cloison_orgbench_{secrets.token_hex(6)}"
    try:
        store = await PostgresStore.open(url, schema=schema)
        await store.aclose()
        started = time.perf_counter()
        await seed_postgres(url, schema, pop)
        seeded_s = time.perf_counter() - started
        store = await PostgresStore.open(url, schema=schema)
        try:
            statements = record_statements(store)
            for call in CALLS.values():
                await call(store, pop.people[0])
            scans = await postgres_scans(url, schema, statements, store._dialect)
            _unrecord(store)
            results = await measure(store, pop.people, args.samples, args.seed)
            spent = await database_time(
                store, url, schema, pop.people, max(1, args.samples // 4), args.seed
            )
            results = {name: (*results[name], *spent[name]) for name in results}
        finally:
            await store.aclose()
        return results, seeded_s, scans
    finally:
        db = await asyncpg.connect(url)
        try:
            await db.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await db.close()


async def run_sqlite(
    directory: Path, pop: Population, args: argparse.Namespace
) -> tuple[Figures, float, list[str]]:
    path = directory / "orgbench.sqlite3"
    store = await SqliteStore.open(path)
    await store.aclose()
    started = time.perf_counter()
    seed_sqlite(path, pop)
    seeded_s = time.perf_counter() - started
    store = await SqliteStore.open(path)
    try:
        statements = record_statements(store)
        for call in CALLS.values():
            await call(store, pop.people[0])
        scans = sqlite_scans(path, statements)
        _unrecord(store)
        results = await measure(store, pop.people, args.samples, args.seed)
    finally:
        await store.aclose()
    return results, seeded_s, scans


def table(title: str, results: Figures) -> str:
    database = any(len(figures) > 3 for figures in results.values())
    head = f"{'call':<30} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
    lines = [title, head + (f" {'db p50':>8} {'db p99':>8}" if database else "")]
    for name, figures in results.items():
        lines.append(f"{name:<30} " + " ".join(f"{value:>8.2f}" for value in figures))
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> int:
    engines = set(args.engines.split(","))
    missed = False
    for engine in ("postgres", "sqlite"):
        if engine not in engines:
            continue
        started = time.perf_counter()
        one_org = "default" if engine == "sqlite" else None
        pop = populate(args.orgs, args.users, seed=args.seed, one_org=one_org)
        made_s = time.perf_counter() - started
        if engine == "postgres":
            results, seeded_s, scans = await run_postgres(args.url, pop, args)
        else:
            with tempfile.TemporaryDirectory(dir=args.dir) as directory:
                results, seeded_s, scans = await run_sqlite(Path(directory), pop, args)
        orgs = len(pop.orgs) - (1 if one_org else 0) or 1
        load = ", ".join(f"{n:.1f}" for n in os.getloadavg())
        print(
            f"\n{engine}: load average {load} on {os.cpu_count()} CPUs; {orgs:,} organisations, "
            f"{len(pop.users):,} users, "
            f"{len(pop.org_members):,} org memberships, {len(pop.spheres):,} spheres, "
            f"{len(pop.members):,} sphere memberships, {len(pop.events):,} posts; "
            f"generated in {made_s:.1f} s, seeded in {seeded_s:.1f} s; "
            f"{args.samples} samples per call"
        )
        print(table(engine, results))
        for line in scans:
            print(f"  full scan: {line}")
        slow = [name for name, figures in results.items() if figures[1] > args.target_ms]
        if slow or scans:
            missed = True
            print(f"  over {args.target_ms} ms at p99: {', '.join(slow) or 'none'}")
    return 1 if missed else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m storage.org_bench", description=__doc__)
    parser.add_argument("--orgs", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=400_000)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--target-ms", type=float, default=20.0)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--engines", default="postgres,sqlite")
    parser.add_argument("--dir", default=None, help="where the SQLite file goes (its disk)")
    parser.add_argument("--seed", type=int, default=13)
    return parser


if __name__ == "__main__":
    sys.exit(asyncio.run(main(_parser().parse_args())))
