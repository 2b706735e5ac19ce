"""The statements both engines run, each written once (see ``storage.sql.dialect``).

``queries(dialect)`` renders them all for one engine, once per process.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields

from storage.rows import (
    EVENT_COLUMNS,
    EVENT_WIDTH,
    POST_COLUMNS,
    POST_WIDTH,
    ROLE_RANK_SQL,
    SPHERE_COLUMNS,
    SPHERE_WIDTH,
    sphere_select,
)
from storage.sql.dialect import Dialect

_S_SPHERE_COLUMNS = sphere_select("s")
# The first offset a member may read (``storage.rows.read_floor``), in SQL.
_MEMBER_FLOOR = (
    "CASE WHEN s.privacy = 'public' AND s.public_from < m.history_from "
    "THEN s.public_from ELSE m.history_from END"
)

_SPHERE = f"SELECT {sphere_select()} FROM spheres WHERE sphere_id = ?"
# Unread: posts after the read marker and from the member's floor on, not deleted, by others.
_USER_SPHERES = f"""
    SELECT {_S_SPHERE_COLUMNS}, m.role, m.read_offset, (
        SELECT count(*) FROM events AS e
        WHERE e.sphere_id = m.sphere_id AND e.kind = 'post' AND e.stream_offset > m.read_offset
          AND e.stream_offset >= {_MEMBER_FLOOR}
          AND e.deleted = {{false}} AND e.author_id <> m.user_id
    ), {_MEMBER_FLOOR}, m.charter_accepted, m.muted_until_ms
    FROM members AS m JOIN spheres AS s ON s.sphere_id = m.sphere_id
    WHERE m.user_id = ? {{after}}
    ORDER BY s.name{{collate}}, s.sphere_id{{collate}} LIMIT ?
"""
_MEMBERS = f"""
    SELECT m.user_id, u.name, u.kind, m.role
    FROM members AS m JOIN users AS u ON u.user_id = m.user_id
    WHERE m.sphere_id = ? {{after}}
    ORDER BY {ROLE_RANK_SQL} DESC, u.name{{collate}}, m.user_id{{collate}} LIMIT ?
"""
# Served by events_history, so a page costs O(limit) however many edits lie between posts.
_POSTS_PAGE = f"""
    SELECT {EVENT_COLUMNS} FROM events {{history_index}}
    WHERE sphere_id = ? AND kind NOT IN ('edit', 'delete', 'react', 'unreact', 'pin', 'unpin')
      AND stream_offset > ? AND stream_offset <= ?
      {{members}}
    ORDER BY stream_offset {{direction}} LIMIT ?
"""
# A reader who may not list the members sees only the member events about themselves.
_OWN_MEMBER_EVENTS = "AND (kind <> 'member' OR member_id = ?)"


def _page(direction: str, members: str) -> str:
    return _POSTS_PAGE.replace("{direction}", direction).replace("{members}", members)


_TEMPLATES = {
    # -- the message log -------------------------------------------------------------------
    "events_after": f"""
        SELECT {EVENT_COLUMNS} FROM events
        WHERE sphere_id = ? AND stream_offset > ? ORDER BY stream_offset LIMIT ?
    """,
    "posts_oldest_first": _page("ASC", ""),
    "posts_newest_first": _page("DESC", ""),
    # Parameters: sphere, lower, upper, the reader, limit.
    "own_posts_oldest_first": _page("ASC", _OWN_MEMBER_EVENTS),
    "own_posts_newest_first": _page("DESC", _OWN_MEMBER_EVENTS),
    "get_event": f"SELECT {EVENT_COLUMNS} FROM events WHERE sphere_id = ? AND stream_offset = ?",
    "heads": "SELECT sphere_id, last_offset, epoch FROM spheres WHERE sphere_id {in_list}",
    # -- spheres and members ---------------------------------------------------------------
    "get_sphere": _SPHERE,
    # Locks the sphere's counter row as an append does: membership and privacy changes are
    # sequenced with the sphere's appends, and groups read memberships only after it.
    "lock_sphere": _SPHERE + " {lock_sphere}",
    "user_name": "SELECT name FROM users WHERE user_id = ?",
    "insert_sphere": (
        f"INSERT INTO spheres ({SPHERE_COLUMNS}) VALUES ({', '.join('?' * SPHERE_WIDTH)})"
    ),
    "insert_member": (
        "INSERT INTO members (sphere_id, user_id, role, joined_ms) VALUES (?, ?, ?, ?)"
    ),
    # history_from is set when the user becomes a member, and kept by later role changes.
    "upsert_member": """
        INSERT INTO members (sphere_id, user_id, role, joined_ms, history_from)
        VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (sphere_id, user_id) DO UPDATE SET role = excluded.role
    """,
    "set_muted": "UPDATE members SET muted_until_ms = ? WHERE sphere_id = ? AND user_id = ?",
    # A member who leaves while muted keeps the rest of the mute for when they come back.
    "keep_departed_mute": """
        INSERT INTO departed_mutes (sphere_id, user_id, until_ms) VALUES (?, ?, ?)
        ON CONFLICT (sphere_id, user_id) DO UPDATE SET until_ms = excluded.until_ms
    """,
    "take_departed_mute": """
        DELETE FROM departed_mutes WHERE sphere_id = ? AND user_id = ? RETURNING until_ms
    """,
    "count_members": "SELECT count(*) FROM members WHERE sphere_id = ?",
    "delete_member": "DELETE FROM members WHERE sphere_id = ? AND user_id = ?",
    "insert_event": (
        f"INSERT INTO events ({EVENT_COLUMNS}) VALUES ({', '.join('?' * EVENT_WIDTH)})"
    ),
    "update_sphere": """
        UPDATE spheres SET name = ?, privacy = ?, listed = ?, join_policy = ?, history_mode = ?,
            public_from = ?, last_offset = ?, retention_days = ?
        WHERE sphere_id = ?
    """,
    "update_counter": "UPDATE spheres SET last_offset = ? WHERE sphere_id = ?",
    "sphere_access": f"""
        SELECT {_S_SPHERE_COLUMNS}, m.role
        FROM spheres s LEFT JOIN members m ON m.sphere_id = s.sphere_id AND m.user_id = ?
        WHERE s.sphere_id = ?
    """,
    # What a reader's view depends on: their role, floor, accepted charter and mute.
    "sphere_view": f"""
        SELECT {_S_SPHERE_COLUMNS}, m.role, m.history_from, m.charter_accepted, m.muted_until_ms
        FROM spheres s LEFT JOIN members m ON m.sphere_id = s.sphere_id AND m.user_id = ?
        WHERE s.sphere_id = ?
    """,
    "sphere_members": f"""
        SELECT {_S_SPHERE_COLUMNS}, m.user_id, m.role, m.history_from
        FROM spheres AS s LEFT JOIN members AS m ON m.sphere_id = s.sphere_id
        WHERE s.sphere_id = ?
    """,
    "get_role": "SELECT role FROM members WHERE sphere_id = ? AND user_id = ?",
    # Everything a membership change is decided on, in one statement, under the sphere's lock.
    # Parameters: sphere, actor, sphere, target, sphere, target, sphere, target, sphere, target,
    # then org, actor, org, target, org, org.
    "membership_state": """
        SELECT (SELECT role FROM members WHERE sphere_id = ? AND user_id = ?),
               (SELECT role FROM members WHERE sphere_id = ? AND user_id = ?),
               (SELECT count(*) FROM members WHERE sphere_id = ? AND role = 'owner'),
               (SELECT name FROM users WHERE user_id = ?),
               EXISTS (SELECT 1 FROM bans WHERE sphere_id = ? AND user_id = ?),
               (SELECT muted_until_ms FROM members WHERE sphere_id = ? AND user_id = ?),
               (SELECT role FROM org_members WHERE org_id = ? AND user_id = ?),
               (SELECT role FROM org_members WHERE org_id = ? AND user_id = ?),
               (SELECT policies FROM organisations WHERE org_id = ?),
               (SELECT suspended_ms FROM organisations WHERE org_id = ?)
    """,
    # -- listings and read markers ---------------------------------------------------------
    "user_spheres": _USER_SPHERES.replace("{after}", ""),
    # Parameters: user, name, name, sphere_id, limit.
    "user_spheres_after": _USER_SPHERES.replace(
        "{after}",
        "AND (s.name{collate} > ? OR (s.name = ? AND s.sphere_id{collate} > ?))",
    ),
    "members": _MEMBERS.replace("{after}", ""),
    # Parameters: sphere, rank, rank, name, name, user_id, limit.
    "members_after": _MEMBERS.replace(
        "{after}",
        f"AND ({ROLE_RANK_SQL} < ? OR ({ROLE_RANK_SQL} = ? AND (u.name{{collate}} > ? "
        "OR (u.name = ? AND m.user_id{collate} > ?))))",
    ),
    # Must repeat the WHERE of the partial index spheres_discoverable for the planner to use it.
    "discoverable": f"""
        SELECT {sphere_select()} FROM spheres WHERE privacy IN ('open', 'public')
          AND listed <> 0
        ORDER BY created_ms DESC, {{creation_order}} DESC LIMIT ?
    """,
    # The same, of the user's organisations only (index spheres_discoverable_by_org).
    "discoverable_in_orgs": f"""
        SELECT {sphere_select()} FROM spheres WHERE privacy IN ('open', 'public')
          AND listed <> 0
          AND org_id IN (SELECT org_id FROM org_members WHERE user_id = ?)
        ORDER BY created_ms DESC, {{creation_order}} DESC LIMIT ?
    """,
    "set_read_marker": """
        UPDATE members SET read_offset = {greatest}(read_offset, {least}(CAST(? AS BIGINT), (
            SELECT last_offset FROM spheres WHERE sphere_id = members.sphere_id
        )))
        WHERE sphere_id = ? AND user_id = ?
        RETURNING read_offset
    """,
    # -- group commits (the parts both engines run alike) ----------------------------------
    "insert_posts": f"INSERT INTO events ({POST_COLUMNS}) VALUES ({', '.join('?' * POST_WIDTH)})",
    # The organisations whose quotas a group counts, locked in order: their groups commit one
    # after another (SQLite's one writer orders them already).
    "lock_orgs": """
        SELECT org_id FROM organisations WHERE org_id {in_list} ORDER BY org_id {lock_sphere}
    """,
    "org_usage": "SELECT org_id, day, posts, body_bytes FROM org_usage WHERE org_id {in_list}",
    "add_usage": """
        INSERT INTO org_usage (org_id, day, posts, body_bytes) VALUES (?, ?, ?, ?)
        ON CONFLICT (org_id, day) DO UPDATE SET posts = org_usage.posts + excluded.posts,
            body_bytes = org_usage.body_bytes + excluded.body_bytes
    """,
}


@dataclass(frozen=True, slots=True)
class Queries:
    """Every shared statement, rendered for one dialect."""

    events_after: str
    posts_oldest_first: str
    posts_newest_first: str
    own_posts_oldest_first: str
    own_posts_newest_first: str
    get_event: str
    heads: str
    get_sphere: str
    lock_sphere: str
    user_name: str
    insert_sphere: str
    insert_member: str
    upsert_member: str
    set_muted: str
    keep_departed_mute: str
    take_departed_mute: str
    count_members: str
    delete_member: str
    insert_event: str
    update_sphere: str
    update_counter: str
    sphere_access: str
    sphere_view: str
    sphere_members: str
    get_role: str
    membership_state: str
    user_spheres: str
    user_spheres_after: str
    members: str
    members_after: str
    discoverable: str
    discoverable_in_orgs: str
    set_read_marker: str
    insert_posts: str
    lock_orgs: str
    org_usage: str
    add_usage: str


@functools.cache
def queries(dialect: Dialect) -> Queries:
    """Every shared statement rendered for ``dialect``."""
    assert {f.name for f in fields(Queries)} == set(_TEMPLATES)
    return Queries(**{name: dialect.render(sql) for name, sql in _TEMPLATES.items()})
