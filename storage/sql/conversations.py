"""Conversations in shared SQL: the writes a group commit adds for replies, reactions, pins
and mentions (``conversation_writes``), and ``SqlConversations``, the reads and reports of
``storage.conversations.Conversations``."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from protocol import (
    MAX_OFFSET,
    MAX_REACTION_USERS,
    EventKind,
    Message,
    ReactionCount,
    ReportReason,
    SphereId,
    UserId,
)
from storage.audit import AuditAction, SphereAuditEntry
from storage.base import TargetGoneError
from storage.conversations import MentionKey, ReportRecord, ThreadRecord
from storage.rows import EVENT_COLUMNS, EVENT_WIDTH, check_limit, to_message
from storage.sql.accounts import SqlAccounts
from storage.sql.audit import audit_queries, insert_sphere_audit
from storage.sql.dialect import Dialect
from storage.sql.plan import GroupPlan

_E = ", ".join("e." + c for c in EVENT_COLUMNS.split(", "))
# The first offset a reader may read: a member's history_from, an outsider's public_from.
# Parameters: sphere, reader, sphere.
_FLOOR = """coalesce(
    (SELECT history_from FROM members WHERE sphere_id = ? AND user_id = ?),
    (SELECT public_from FROM spheres WHERE sphere_id = ?))"""
# A list of offsets passed as one parameter (``Dialect.list_arg``).
_OFFSET_LISTS = {"sqlite": "IN (SELECT value FROM json_each(?))", "postgres": "= ANY(?::bigint[])"}
_REPORT_COLUMNS = "report_id, sphere_id, target, reporter_id, reason, ts_ms, comment"
_MENTIONS = f"""
    SELECT {_E} FROM mentions AS n
    JOIN members AS m ON m.sphere_id = n.sphere_id AND m.user_id = n.user_id
    JOIN events AS e ON e.sphere_id = n.sphere_id AND e.stream_offset = n.stream_offset
    WHERE n.user_id = ? AND e.deleted = {{false}} AND n.stream_offset >= m.history_from {{after}}
    ORDER BY n.ts_ms DESC, n.sphere_id{{collate}} DESC, n.stream_offset DESC LIMIT ?
"""

_REPORTS = f"""
    SELECT {_REPORT_COLUMNS} FROM reports WHERE sphere_id = ? {{before}}
    ORDER BY report_id DESC LIMIT ?
"""

_TEMPLATES = {
    # -- reads -----------------------------------------------------------------------------
    "pins": f"""
        SELECT {EVENT_COLUMNS} FROM events
        WHERE sphere_id = ? AND pinned <> {{false}} AND stream_offset >= {_FLOOR}
        ORDER BY stream_offset DESC LIMIT ?
    """,
    # A post the reader may read, with its thread's first post (NULL: it is one).
    "readable_post": f"""
        SELECT {EVENT_COLUMNS}, thread_root FROM events
        WHERE sphere_id = ? AND stream_offset = ? AND kind = 'post' AND stream_offset >= {_FLOOR}
    """,
    "replies": f"""
        SELECT {EVENT_COLUMNS} FROM events
        WHERE sphere_id = ? AND thread_root = ? AND kind = 'post' AND stream_offset > ?
        ORDER BY stream_offset LIMIT ?
    """,
    # The bound on last_offset (MAX_OFFSET for the first page) keeps the plan on the
    # activity index, whatever the size of the sphere.
    "threads": f"""
        SELECT {_E}, t.replies, t.last_offset, t.last_ts_ms FROM thread_summaries AS t
        JOIN events AS e ON e.sphere_id = t.sphere_id AND e.stream_offset = t.root
        WHERE t.sphere_id = ? AND t.last_offset < ? AND t.root >= {_FLOOR}
        ORDER BY t.last_offset DESC LIMIT ?
    """,
    "mentions": _MENTIONS.replace("{after}", ""),
    # A row value, so that the page starts with an index seek. Parameters: user, ts_ms,
    # sphere, offset, limit.
    "mentions_after": _MENTIONS.replace(
        "{after}", "AND (n.ts_ms, n.sphere_id{collate}, n.stream_offset) < (?, ?, ?)"
    ),
    # Each emoji's first MAX_REACTION_USERS users (in the order they reacted) and its count,
    # emojis in the order of their first use.
    "reactions": """
        SELECT target, emoji, user_id, total FROM (
            SELECT target, emoji, user_id,
                row_number() OVER (PARTITION BY target, emoji ORDER BY stream_offset) AS place,
                count(*) OVER (PARTITION BY target, emoji) AS total,
                min(stream_offset) OVER (PARTITION BY target, emoji) AS first_offset
            FROM reactions WHERE sphere_id = ? AND target {offsets}
        ) AS r
        WHERE place <= ? ORDER BY target, first_offset, place
    """,
    # -- reports ---------------------------------------------------------------------------
    "live_post_author": f"""
        SELECT author_id FROM events
        WHERE sphere_id = ? AND stream_offset = ? AND kind = 'post' AND deleted = {{false}}
          AND stream_offset >= {_FLOOR}
    """,
    "insert_report": f"""
        INSERT INTO reports (sphere_id, target, reporter_id, reason, comment, ts_ms)
        VALUES (?, ?, ?, ?, ?, ?)
        ON CONFLICT (sphere_id, target, reporter_id) DO NOTHING
        RETURNING {_REPORT_COLUMNS}
    """,
    "report_of": f"""
        SELECT {_REPORT_COLUMNS} FROM reports
        WHERE sphere_id = ? AND target = ? AND reporter_id = ?
    """,
    "reports": _REPORTS.replace("{before}", ""),
    "reports_before": _REPORTS.replace("{before}", "AND report_id < ?"),
    # -- group commits ---------------------------------------------------------------------
    "delete_reaction": """
        DELETE FROM reactions WHERE sphere_id = ? AND target = ? AND emoji = ? AND user_id = ?
    """,
    "insert_reaction": """
        INSERT INTO reactions (sphere_id, target, emoji, user_id, stream_offset)
        VALUES (?, ?, ?, ?, ?) ON CONFLICT (sphere_id, target, emoji, user_id) DO NOTHING
    """,
    "clear_reactions": "DELETE FROM reactions WHERE sphere_id = ? AND target = ?",
    "set_pinned": "UPDATE events SET pinned = ? WHERE sphere_id = ? AND stream_offset = ?",
    "clear_mentions": "DELETE FROM mentions WHERE sphere_id = ? AND stream_offset = ?",
    "insert_mention": """
        INSERT INTO mentions (sphere_id, stream_offset, user_id, ts_ms) VALUES (?, ?, ?, ?)
    """,
    "upsert_thread": """
        INSERT INTO thread_summaries (sphere_id, root, replies, last_offset, last_ts_ms)
        VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (sphere_id, root) DO UPDATE SET
            replies = thread_summaries.replies + excluded.replies,
            last_offset = excluded.last_offset, last_ts_ms = excluded.last_ts_ms
    """,
}


@dataclass(frozen=True, slots=True)
class ConversationQueries:
    pins: str
    readable_post: str
    replies: str
    threads: str
    mentions: str
    mentions_after: str
    reactions: str
    live_post_author: str
    insert_report: str
    report_of: str
    reports: str
    reports_before: str
    delete_reaction: str
    insert_reaction: str
    clear_reactions: str
    set_pinned: str
    clear_mentions: str
    insert_mention: str
    upsert_thread: str


@functools.cache
def conversation_queries(dialect: Dialect) -> ConversationQueries:
    assert {f.name for f in fields(ConversationQueries)} == set(_TEMPLATES)
    offsets = _OFFSET_LISTS[dialect.name]
    return ConversationQueries(
        **{
            name: dialect.render(sql.replace("{offsets}", offsets))
            for name, sql in _TEMPLATES.items()
        }
    )


def conversation_writes(plan: GroupPlan, dialect: Dialect) -> list[tuple[str, list[Any]]]:
    """The statements (each with its rows, for ``executemany``) that write what a planned
    group changes besides its events rows, in the order they must run; empty ones left out.

    Reactions removed go before those added (a group may withdraw and add one again), and the
    reactions of deleted posts are cleared last.
    """
    q = conversation_queries(dialect)
    reactions = plan.reactions.items()
    writes: list[tuple[str, list[Any]]] = [
        (q.delete_reaction, [key for key, r in reactions if r.remove]),
        (
            q.insert_reaction,
            [(*key, r.offset) for key, r in reactions if r.offset is not None],
        ),
        (q.clear_reactions, plan.cleared),
        (q.set_pinned, plan.pinned),
        (q.clear_mentions, plan.remention),
        (
            q.insert_mention,
            [
                (sphere_id, offset, user_id, ts_ms)
                for (sphere_id, offset), (ts_ms, users) in plan.mentioned.items()
                for user_id in users
            ],
        ),
        (
            q.upsert_thread,
            [(sphere_id, root, *summary) for (sphere_id, root), summary in plan.threads.items()],
        ),
        (audit_queries(dialect).insert, plan.audits),
    ]
    return [(sql, rows) for sql, rows in writes if rows]


def _report(row: Sequence[Any]) -> ReportRecord:
    report_id, sphere_id, target, reporter_id, reason, ts_ms, comment = row
    return ReportRecord(
        report_id=report_id,
        sphere_id=SphereId(sphere_id),
        target=target,
        reporter_id=UserId(reporter_id),
        reason=ReportReason(reason),
        ts_ms=ts_ms,
        comment=comment,
    )


class SqlConversations(SqlAccounts):
    """``storage.conversations.Conversations`` in shared SQL, and the reactions that posts
    carry in every view of current state."""

    @property
    def _cq(self) -> ConversationQueries:
        return conversation_queries(self._dialect)

    async def with_reactions(self, messages: list[Message]) -> list[Message]:
        """``messages`` with the reactions of their live posts filled in."""
        wanted: dict[str, list[int]] = {}
        for m in messages:
            if m.kind is EventKind.POST and not m.deleted:
                wanted.setdefault(m.sphere_id, []).append(m.offset)
        if not wanted:
            return messages
        counts: dict[tuple[str, int], list[ReactionCount]] = {}
        for sphere_id, offsets in wanted.items():
            rows = await self._query(
                self._cq.reactions, sphere_id, self._dialect.list_arg(offsets), MAX_REACTION_USERS
            )
            for target, emoji, user_id, total in rows:
                post = counts.setdefault((sphere_id, target), [])
                if not post or post[-1].emoji != emoji:
                    post.append(ReactionCount(emoji=emoji, count=total, user_ids=[]))
                post[-1].user_ids.append(UserId(user_id))
        return [
            replace(m, reactions=found)
            if (found := counts.get((m.sphere_id, m.offset))) is not None
            else m
            for m in messages
        ]

    async def list_pins(
        self, sphere_id: SphereId, reader: UserId, *, limit: int
    ) -> tuple[list[Message], bool]:
        check_limit(limit)
        rows = await self._query(self._cq.pins, sphere_id, sphere_id, reader, sphere_id, limit + 1)
        posts = [to_message(row) for row in rows[:limit]]
        posts.reverse()
        return await self.with_reactions(posts), len(rows) > limit

    async def get_thread(
        self, sphere_id: SphereId, root: int, reader: UserId, *, after: int, limit: int
    ) -> tuple[Message, list[Message], bool] | None:
        check_limit(limit)
        first = await self._readable_post(sphere_id, root, reader)
        if first is not None and first[1] is not None:
            first = await self._readable_post(sphere_id, first[1], reader)
        if first is None:
            return None
        post = first[0]
        rows = await self._query(self._cq.replies, sphere_id, post.offset, after, limit + 1)
        page = await self.with_reactions([post, *(to_message(row) for row in rows[:limit])])
        return page[0], page[1:], len(rows) > limit

    async def _readable_post(
        self, sphere_id: SphereId, offset: int, reader: UserId
    ) -> tuple[Message, int | None] | None:
        rows = await self._query(
            self._cq.readable_post, sphere_id, offset, sphere_id, reader, sphere_id
        )
        if not rows:
            return None
        return to_message(rows[0][:EVENT_WIDTH]), rows[0][EVENT_WIDTH]

    async def list_threads(
        self, sphere_id: SphereId, reader: UserId, *, before: int | None, limit: int
    ) -> list[ThreadRecord]:
        check_limit(limit)
        below = MAX_OFFSET if before is None else before
        rows = await self._query(
            self._cq.threads, sphere_id, below, sphere_id, reader, sphere_id, limit
        )
        roots = await self.with_reactions([to_message(row[:EVENT_WIDTH]) for row in rows])
        return [
            ThreadRecord(root, *row[EVENT_WIDTH:]) for root, row in zip(roots, rows, strict=True)
        ]

    async def list_mentions(
        self, user_id: UserId, *, after: MentionKey | None, limit: int
    ) -> list[Message]:
        check_limit(limit)
        q = self._cq
        if after is None:
            rows = await self._query(q.mentions, user_id, limit)
        else:
            ts_ms, sphere_id, offset = after
            rows = await self._query(q.mentions_after, user_id, ts_ms, sphere_id, offset, limit)
        return await self.with_reactions([to_message(row[:EVENT_WIDTH]) for row in rows])

    async def add_report(
        self,
        sphere_id: SphereId,
        target: int,
        reporter_id: UserId,
        reason: ReportReason,
        comment: str | None,
        *,
        now_ms: int,
    ) -> tuple[ReportRecord, bool]:
        q = self._cq
        async with self._writing() as db:
            authors = await db.fetch(
                q.live_post_author, sphere_id, target, sphere_id, reporter_id, sphere_id
            )
            if not authors:
                raise TargetGoneError(f"no live post at offset {target} of {sphere_id}")
            rows = await db.fetch(
                q.insert_report, sphere_id, target, reporter_id, reason.value, comment, now_ms
            )
            if not rows:
                existing = await db.fetch(q.report_of, sphere_id, target, reporter_id)
                return _report(existing[0]), False
            entry = SphereAuditEntry(
                sphere_id=sphere_id,
                ts_ms=now_ms,
                actor_id=reporter_id,
                action=AuditAction.POST_REPORTED,
                target_id=UserId(authors[0][0]),
                offset=target,
                detail=reason.value,
            )
            await insert_sphere_audit(db, self._dialect, entry)
        return _report(rows[0]), True

    async def list_reports(
        self, sphere_id: SphereId, *, before: int | None, limit: int
    ) -> list[ReportRecord]:
        check_limit(limit)
        q = self._cq
        if before is None:
            rows = await self._query(q.reports, sphere_id, limit)
        else:
            rows = await self._query(q.reports_before, sphere_id, before, limit)
        return [_report(row) for row in rows]
