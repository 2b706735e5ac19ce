"""Organisations for end-to-end tests, set up in the server's SQLite file while it runs.

The tests that need a second organisation, a stranger to one, a manager, a policy or a
suspension write those rows directly (WAL lets a second connection write beside the server's;
the server reads organisations from the store on every check that needs them, and caches
nothing of them). Each helper is one transaction.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from typing import Any

from storage import DEFAULT_ORG
from tests.support import ServerProcess

# Why: the server's writer may hold the lock for a group commit; wait for it, not fail.
BUSY_TIMEOUT_MS = 10_000


@contextlib.contextmanager
def _db(server: ServerProcess) -> Iterator[sqlite3.Connection]:
    assert not server.store_url, "these helpers write the SQLite file of data_dir"
    db = sqlite3.connect(server.data_dir / "cloison.sqlite3", timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        with db:  # one transaction, committed on leaving
            db.execute("PRAGMA foreign_keys = ON")
            yield db
    finally:
        db.close()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def create_org(server: ServerProcess, org_id: str, name: str, **policies: Any) -> None:
    with _db(server) as db:
        db.execute(
            "INSERT INTO organisations (org_id, name, created_ms, policies) VALUES (?, ?, ?, ?)",
            (org_id, name, _now_ms(), json.dumps(policies)),
        )


def move_to_org(
    server: ServerProcess, user_ids: Iterable[str], org_id: str, role: str = "member"
) -> None:
    """Make the users members of ``org_id`` (with ``role``) and of no other organisation."""
    with _db(server) as db:
        for user_id in user_ids:
            db.execute("DELETE FROM org_members WHERE user_id = ?", (user_id,))
            db.execute(
                "INSERT INTO org_members (org_id, user_id, role, joined_ms) VALUES (?, ?, ?, ?)",
                (org_id, user_id, role, _now_ms()),
            )


def set_org_role(server: ServerProcess, user_id: str, role: str, org_id: str = DEFAULT_ORG) -> None:
    with _db(server) as db:
        db.execute(
            "UPDATE org_members SET role = ? WHERE org_id = ? AND user_id = ?",
            (role, org_id, user_id),
        )


def set_policies(server: ServerProcess, org_id: str, **policies: Any) -> None:
    """Change the named policies (``quotas`` replaced whole) and keep the others."""
    with _db(server) as db:
        (current,) = db.execute(
            "SELECT policies FROM organisations WHERE org_id = ?", (org_id,)
        ).fetchone()
        merged = {**json.loads(current), **policies}
        db.execute(
            "UPDATE organisations SET policies = ? WHERE org_id = ?", (json.dumps(merged), org_id)
        )


def set_suspended(server: ServerProcess, org_id: str, suspended: bool) -> None:
    with _db(server) as db:
        db.execute(
            "UPDATE organisations SET suspended_ms = ? WHERE org_id = ?",
            (_now_ms() if suspended else None, org_id),
        )


def move_spheres(server: ServerProcess, sphere_ids: Iterable[str], org_id: str) -> None:
    """Give the spheres to ``org_id`` (as if they had been created in it)."""
    with _db(server) as db:
        for sphere_id in sphere_ids:
            db.execute("UPDATE spheres SET org_id = ? WHERE sphere_id = ?", (org_id, sphere_id))


def usage(server: ServerProcess, org_id: str) -> list[tuple[int, int, int]]:
    """The organisation's usage rows: (day, posts, body_bytes)."""
    with _db(server) as db:
        rows = db.execute(
            "SELECT day, posts, body_bytes FROM org_usage WHERE org_id = ? ORDER BY day",
            (org_id,),
        ).fetchall()
    return [tuple(row) for row in rows]
