"""Account deletion in shared SQL (``storage.deletion.AccountDeletions``).

Every step is one transaction that finds its work in the rows it changes: events still
carrying the account as author, a member row still there, a sphere row of the job not yet at
the step's end. A step run twice (a crash after its commit, two processes at once) therefore
finds nothing to do the second time. Steps that touch a sphere's stream take the sphere's lock
first (``lock_sphere``), as membership changes do, so no group commit of the sphere interleaves.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from protocol import EventKind, MemberAction, Message, Privacy, Role, SphereId, UserId
from storage.audit import AuditAction, SphereAuditEntry
from storage.base import OPERATOR, AuditEntry, ChangeKind, SphereRecord
from storage.deletion import (
    DELETION_REQUESTED,
    DeletionJob,
    DeletionMode,
    DeletionRequest,
    DeletionState,
    SphereStep,
)
from storage.rows import (
    NO_AUTHOR,
    ROLE_RANK_SQL,
    check_limit,
    event_row,
    server_message_id,
    to_sphere,
)
from storage.sql.accounts import SqlRunner, _audit
from storage.sql.audit import insert_sphere_audit
from storage.sql.dialect import Dialect
from storage.sql.moderation import SqlModeration

_JOB_COLUMNS = "user_id, requested_ms, requested_by, mode, state, done_ms, scanned, rewritten"
# Where the account left something in a sphere; parameters: the user id six times. Reactions,
# reports and bans need a membership, which left a member event.
_LEFT_SOMETHING = """
    EXISTS (SELECT 1 FROM members AS m WHERE m.sphere_id = s.sphere_id AND m.user_id = ?)
    OR EXISTS (SELECT 1 FROM events AS e WHERE e.sphere_id = s.sphere_id AND e.author_id = ?)
    OR EXISTS (SELECT 1 FROM events AS e
               WHERE e.sphere_id = s.sphere_id AND e.kind = 'member' AND e.member_id = ?)
    OR EXISTS (SELECT 1 FROM invitations AS i
               WHERE i.sphere_id = s.sphere_id AND (i.invitee_id = ? OR i.inviter_id = ?))
    OR EXISTS (SELECT 1 FROM join_requests AS j WHERE j.sphere_id = s.sphere_id AND j.user_id = ?)
"""
# What a batch does to each event of the account. The message_id is the author's idempotency
# key (client-chosen text): it goes too, replaced by one unique in the sphere without author.
_NEW_KEY = "'~d' || CAST(stream_offset AS TEXT)"
_REWRITE = {
    DeletionMode.ERASE: f"""
        UPDATE events SET author_id = '{NO_AUTHOR}', message_id = {_NEW_KEY}, body = NULL,
            mentions = NULL,
            deleted = CASE WHEN kind = 'post' THEN TRUE ELSE deleted END,
            pinned = CASE WHEN kind = 'post' THEN FALSE ELSE pinned END
        WHERE sphere_id = ? AND stream_offset {{offsets}}
    """,
    DeletionMode.ANONYMISE: f"""
        UPDATE events SET author_id = '{NO_AUTHOR}', message_id = {_NEW_KEY}
        WHERE sphere_id = ? AND stream_offset {{offsets}}
    """,
}

_TEMPLATES = {
    "job": f"""
        SELECT {_JOB_COLUMNS}, (
            SELECT count(*) FROM account_deletion_spheres AS d
            WHERE d.user_id = account_deletions.user_id AND d.step <> 'done'
        ) FROM account_deletions WHERE user_id = ?
    """,
    "insert_job": """
        INSERT INTO account_deletions (user_id, requested_ms, requested_by, mode, state)
        VALUES (?, ?, ?, ?, 'pending') ON CONFLICT (user_id) DO NOTHING RETURNING user_id
    """,
    "user_exists": "SELECT 1 FROM users WHERE user_id = ?",
    "disable": "UPDATE users SET disabled_ms = coalesce(disabled_ms, ?) WHERE user_id = ?",
    "revoke_all": """
        UPDATE tokens SET revoked = TRUE, revoked_ms = CAST(? AS BIGINT)
        WHERE user_id = ? AND revoked = FALSE RETURNING token_id
    """,
    "open_jobs": """
        SELECT user_id FROM account_deletions WHERE state <> 'done'
        ORDER BY requested_ms, user_id LIMIT ?
    """,
    "claim": """
        UPDATE account_deletions SET lease_owner = ?, lease_until_ms = ?
        WHERE user_id = ? AND state <> 'done'
          AND (lease_owner IS NULL OR lease_owner = ? OR lease_until_ms <= ?)
        RETURNING user_id
    """,
    "cursor": "SELECT sphere_cursor, mode, requested_by FROM account_deletions WHERE user_id = ?",
    "sphere_page": "SELECT sphere_id FROM spheres WHERE sphere_id > ? ORDER BY sphere_id LIMIT ?",
    "record_spheres": f"""
        INSERT INTO account_deletion_spheres (user_id, sphere_id, step)
        SELECT ?, s.sphere_id, 'membership' FROM spheres AS s
        WHERE s.sphere_id > ? AND s.sphere_id <= ? AND ({_LEFT_SOMETHING})
        ON CONFLICT (user_id, sphere_id) DO NOTHING
    """,
    "move_cursor": """
        UPDATE account_deletions SET sphere_cursor = ?, scanned = ? WHERE user_id = ?
    """,
    "spheres_at": """
        SELECT sphere_id FROM account_deletion_spheres
        WHERE user_id = ? AND step = ? AND sphere_id > ?
        ORDER BY sphere_id LIMIT ?
    """,
    "set_step": """
        UPDATE account_deletion_spheres SET step = ? WHERE user_id = ? AND sphere_id = ?
    """,
    "owners": "SELECT count(*) FROM members WHERE sphere_id = ? AND role = 'owner'",
    # The next owner: the highest role, then the longest-standing member.
    "successor": f"""
        SELECT m.user_id, u.name FROM members AS m JOIN users AS u ON u.user_id = m.user_id
        WHERE m.sphere_id = ? AND m.user_id <> ?
        ORDER BY {ROLE_RANK_SQL} DESC, m.joined_ms, m.user_id LIMIT 1
    """,
    "make_owner": "UPDATE members SET role = 'owner' WHERE sphere_id = ? AND user_id = ?",
    "authored": "SELECT stream_offset, kind FROM events WHERE sphere_id = ? AND author_id = ? "
    "LIMIT ?",
    "erase": _REWRITE[DeletionMode.ERASE],
    "anonymise": _REWRITE[DeletionMode.ANONYMISE],
    "clear_reactions": "DELETE FROM reactions WHERE sphere_id = ? AND target {offsets}",
    "clear_mentions": "DELETE FROM mentions WHERE sphere_id = ? AND stream_offset {offsets}",
    "count_rewritten": "UPDATE account_deletions SET rewritten = rewritten + ? WHERE user_id = ?",
    "left": "SELECT count(*) FROM account_deletion_spheres WHERE user_id = ? AND step <> 'done'",
    "memberships": "SELECT sphere_id FROM members WHERE user_id = ?",
    "requeue": """
        INSERT INTO account_deletion_spheres (user_id, sphere_id, step) VALUES (?, ?, 'membership')
        ON CONFLICT (user_id, sphere_id) DO UPDATE SET step = 'membership'
    """,
    "delete_mentions": "DELETE FROM mentions WHERE user_id = ?",
    "delete_tokens": "DELETE FROM tokens WHERE user_id = ?",
    "delete_user": "DELETE FROM users WHERE user_id = ?",
    "delete_progress": "DELETE FROM account_deletion_spheres WHERE user_id = ?",
    "done": """
        UPDATE account_deletions
        SET state = 'done', done_ms = ?, lease_owner = NULL, lease_until_ms = NULL
        WHERE user_id = ? AND state <> 'done' RETURNING user_id
    """,
    "set_state": "UPDATE account_deletions SET state = ? WHERE user_id = ? AND state <> 'done'",
}
# What the account left in a sphere besides its events, removed once those are rewritten;
# parameters: the sphere, then the user.
_SPHERE_ROWS = {
    "unname": "UPDATE events SET member_name = NULL "
    "WHERE sphere_id = ? AND kind = 'member' AND member_id = ?",
    "reactions": "DELETE FROM reactions WHERE sphere_id = ? AND user_id = ?",
    "mentions": "DELETE FROM mentions WHERE sphere_id = ? AND user_id = ?",
    "invitations": "DELETE FROM invitations WHERE sphere_id = ? AND ? IN (invitee_id, inviter_id)",
    "requests": "DELETE FROM join_requests WHERE sphere_id = ? AND user_id = ?",
    "bans": "DELETE FROM bans WHERE sphere_id = ? AND user_id = ?",
    "reports": "DELETE FROM reports WHERE sphere_id = ? AND reporter_id = ?",
    "mutes": "DELETE FROM departed_mutes WHERE sphere_id = ? AND user_id = ?",
}
_OFFSETS = {"sqlite": "IN (SELECT value FROM json_each(?))", "postgres": "= ANY(?::bigint[])"}


@dataclass(frozen=True, slots=True)
class DeletionQueries:
    job: str
    insert_job: str
    user_exists: str
    disable: str
    revoke_all: str
    open_jobs: str
    claim: str
    cursor: str
    sphere_page: str
    record_spheres: str
    move_cursor: str
    spheres_at: str
    set_step: str
    owners: str
    successor: str
    make_owner: str
    authored: str
    erase: str
    anonymise: str
    clear_reactions: str
    clear_mentions: str
    count_rewritten: str
    left: str
    memberships: str
    requeue: str
    delete_mentions: str
    delete_tokens: str
    delete_user: str
    delete_progress: str
    done: str
    set_state: str
    sphere_rows: tuple[str, ...]


@functools.cache
def deletion_queries(dialect: Dialect) -> DeletionQueries:
    names = {f.name for f in fields(DeletionQueries)} - {"sphere_rows"}
    assert names == set(_TEMPLATES)
    offsets = _OFFSETS[dialect.name]
    rendered = {
        name: dialect.render(sql.replace("{offsets}", offsets)) for name, sql in _TEMPLATES.items()
    }
    rows = tuple(dialect.render(sql) for sql in _SPHERE_ROWS.values())
    return DeletionQueries(**rendered, sphere_rows=rows)


def _job(row: Sequence[Any]) -> DeletionJob:
    user_id, requested_ms, requested_by, mode, state, done_ms, scanned, rewritten, left = row
    return DeletionJob(
        user_id=UserId(user_id),
        requested_ms=requested_ms,
        requested_by=requested_by,
        mode=DeletionMode(mode),
        state=DeletionState(state),
        done_ms=done_ms,
        scanned=bool(scanned),
        spheres_left=left,
        rewritten=rewritten,
    )


def _serverside(sphere: SphereRecord, now_ms: int, **values: Any) -> Message:
    """A member event the server writes itself (no author), after the sphere's offset."""
    return Message(
        sphere_id=sphere.sphere_id,
        offset=sphere.offset + 1,
        kind=EventKind.MEMBER,
        message_id=server_message_id(),
        author_id=None,
        ts_ms=now_ms,
        **values,
    )


class SqlAccountDeletions(SqlModeration):
    """``storage.deletion.AccountDeletions`` over the engine's hooks."""

    @property
    def _d(self) -> DeletionQueries:
        return deletion_queries(self._dialect)

    async def request_account_deletion(
        self, user_id: UserId, *, requested_by: str, mode: DeletionMode, now_ms: int
    ) -> DeletionRequest | None:
        d = self._d
        async with self._writing() as db:
            inserted: Sequence[Sequence[Any]] = ()
            if await db.fetch(d.user_exists, user_id):
                inserted = await db.fetch(d.insert_job, user_id, now_ms, requested_by, mode.value)
            if not inserted:  # asked before (the user row may be gone), or no such user
                rows = await db.fetch(d.job, user_id)
                return DeletionRequest(_job(rows[0]), created=False, revoked=[]) if rows else None
            await db.fetch(d.disable, now_ms, user_id)
            await self._change(db, ChangeKind.USER_DISABLED, user_id, None, now_ms)
            revoked = sorted(str(row[0]) for row in await db.fetch(d.revoke_all, now_ms, user_id))
            for token_id in revoked:
                await self._change(db, ChangeKind.TOKEN_REVOKED, user_id, token_id, now_ms)
            entry = AuditEntry(requested_by, DELETION_REQUESTED, user_id, now_ms, detail=mode.value)
            await _audit(db, entry, user_id)
            rows = await db.fetch(d.job, user_id)
        return DeletionRequest(_job(rows[0]), created=True, revoked=revoked)

    async def get_account_deletion(self, user_id: UserId) -> DeletionJob | None:
        rows = await self._query(self._d.job, user_id)
        return _job(rows[0]) if rows else None

    async def open_account_deletions(self, limit: int) -> list[UserId]:
        check_limit(limit)
        return [UserId(row[0]) for row in await self._query(self._d.open_jobs, limit)]

    async def claim_account_deletion(
        self, user_id: UserId, *, owner: str, now_ms: int, lease_ms: int
    ) -> DeletionJob | None:
        d = self._d
        async with self._writing() as db:
            claimed = await db.fetch(d.claim, owner, now_ms + lease_ms, user_id, owner, now_ms)
            rows = await db.fetch(d.job, user_id) if claimed else []
        return _job(rows[0]) if rows else None

    async def scan_deletion_spheres(self, user_id: UserId, limit: int) -> bool:
        check_limit(limit)
        d = self._d
        async with self._writing() as db:
            rows = await db.fetch(d.cursor, user_id)
            if not rows:
                return True
            cursor = rows[0][0]
            page = [row[0] for row in await db.fetch(d.sphere_page, cursor, limit)]
            if page:
                await db.fetch(d.record_spheres, user_id, cursor, page[-1], *[user_id] * 6)
            finished = len(page) < limit
            await db.fetch(d.move_cursor, page[-1] if page else cursor, finished, user_id)
        return finished

    async def deletion_spheres(
        self, user_id: UserId, step: SphereStep, limit: int, *, after: str = ""
    ) -> list[SphereId]:
        check_limit(limit)
        rows = await self._query(self._d.spheres_at, user_id, step.value, after, limit)
        return [SphereId(row[0]) for row in rows]

    async def remove_deleted_member(
        self,
        user_id: UserId,
        sphere_id: SphereId,
        *,
        actor: str,
        now_ms: int,
        keep_empty: bool = False,
    ) -> list[Message]:
        d, q = self._d, self._q
        async with self._writing() as db:
            locked = await db.fetch(q.lock_sphere, sphere_id)
            if not locked:  # deleted meanwhile, with everything in it
                await db.fetch(d.set_step, SphereStep.DONE.value, user_id, sphere_id)
                return []
            sphere = to_sphere(locked[0])
            roles = await db.fetch(q.get_role, sphere_id, user_id)
            events: list[Message] = []
            if roles:
                jobs = await db.fetch(d.cursor, user_id)
                erase = bool(jobs) and jobs[0][1] == DeletionMode.ERASE.value
                if sphere.privacy is Privacy.DIRECT and not keep_empty:
                    # A conversation nobody is left in is nobody's: it goes, as an owner's
                    # sphere without successor does.
                    left = await db.fetch(q.count_members, sphere_id)
                    if left[0][0] == 1:
                        return [await self._delete_emptied(db, sphere, user_id, actor, now_ms)]
                if roles[0][0] == Role.OWNER.value:
                    owners = await db.fetch(d.owners, sphere_id)
                    if owners[0][0] == 1:
                        successor = await db.fetch(d.successor, sphere_id, user_id)
                        if not successor and not keep_empty:
                            return [await self._delete_emptied(db, sphere, user_id, actor, now_ms)]
                        if successor:
                            promoted = await self._promote(db, sphere, successor[0], actor, now_ms)
                            events.append(promoted)
                            sphere = dataclasses.replace(sphere, offset=promoted.offset)
                events.append(await self._remove(db, sphere, user_id, erase, actor, now_ms))
            await db.fetch(d.set_step, SphereStep.CONTENT.value, user_id, sphere_id)
        return events

    async def _promote(
        self, db: SqlRunner, sphere: SphereRecord, successor: Sequence[Any], actor: str, now: int
    ) -> Message:
        """Make ``successor`` (user_id, name) the owner, by an event without author."""
        user_id, name = UserId(successor[0]), successor[1]
        await db.fetch(self._d.make_owner, sphere.sphere_id, user_id)
        event = _serverside(
            sphere,
            now,
            member_id=user_id,
            member_name=name,
            role=Role.OWNER,
            action=MemberAction.ROLE_CHANGED,
        )
        await self._write_event(db, event)
        entry = SphereAuditEntry(
            sphere.sphere_id,
            now,
            UserId(actor),
            AuditAction.ROLE_CHANGED,
            user_id,
            event.offset,
            Role.OWNER.value,
        )
        await insert_sphere_audit(db, self._dialect, entry)
        return event

    async def _remove(
        self,
        db: SqlRunner,
        sphere: SphereRecord,
        user_id: UserId,
        erase: bool,
        actor: str,
        now: int,
    ) -> Message:
        """The ``deleted`` member event: no author, no name; ``deleted`` says posts go."""
        await db.fetch(self._q.delete_member, sphere.sphere_id, user_id)
        event = _serverside(
            sphere, now, member_id=user_id, action=MemberAction.DELETED, deleted=erase
        )
        await self._write_event(db, event)
        entry = SphereAuditEntry(
            sphere.sphere_id, now, UserId(actor), AuditAction.ACCOUNT_DELETED, user_id, event.offset
        )
        await insert_sphere_audit(db, self._dialect, entry)
        return event

    async def _write_event(self, db: SqlRunner, event: Message) -> None:
        await db.fetch(self._q.insert_event, *event_row(event))
        await db.fetch(self._q.update_counter, event.offset, event.sphere_id)

    async def _delete_emptied(
        self, db: SqlRunner, sphere: SphereRecord, user_id: UserId, actor: str, now: int
    ) -> Message:
        """Delete a sphere the account was the last member of, as ``delete_sphere`` does."""
        event = await self._delete_sphere_in(db, sphere, actor, None, now)
        await db.fetch(self._d.set_step, SphereStep.DONE.value, user_id, sphere.sphere_id)
        return event

    async def erase_deleted_content(
        self, user_id: UserId, sphere_id: SphereId, mode: DeletionMode, limit: int, *, now_ms: int
    ) -> int:
        check_limit(limit)
        d, q = self._d, self._q
        async with self._writing() as db:
            locked = await db.fetch(q.lock_sphere, sphere_id)
            if not locked:
                await db.fetch(d.set_step, SphereStep.DONE.value, user_id, sphere_id)
                return 0
            rows = await db.fetch(d.authored, sphere_id, user_id, limit)
            if not rows and not (await db.fetch(q.count_members, sphere_id))[0][0]:
                # Kept empty while a legal hold held it: it goes now, as it would have then
                # (outside readers still subscribed are closed when their node finds it gone).
                jobs = await db.fetch(d.cursor, user_id)
                actor = jobs[0][2] if jobs else OPERATOR
                await self._delete_emptied(db, to_sphere(locked[0]), user_id, actor, now_ms)
                return 0
            if not rows:
                for sql in d.sphere_rows:
                    await db.fetch(sql, sphere_id, user_id)
                await db.fetch(d.set_step, SphereStep.DONE.value, user_id, sphere_id)
                return 0
            offsets = self._dialect.list_arg([int(row[0]) for row in rows])
            rewrite = d.erase if mode is DeletionMode.ERASE else d.anonymise
            await db.fetch(rewrite, sphere_id, offsets)
            posts = [int(row[0]) for row in rows if row[1] == EventKind.POST.value]
            if mode is DeletionMode.ERASE and posts:
                # As a message delete does: the erased posts' reactions and mentions go.
                await db.fetch(d.clear_reactions, sphere_id, self._dialect.list_arg(posts))
                await db.fetch(d.clear_mentions, sphere_id, self._dialect.list_arg(posts))
            await db.fetch(d.count_rewritten, len(rows), user_id)
        return len(rows)

    async def remove_deleted_user(self, user_id: UserId) -> bool:
        d = self._d
        async with self._writing() as db:
            left = await db.fetch(d.left, user_id)
            if left[0][0]:
                return False
            # A membership made after the scan (an administrator added the disabled account):
            # back to the membership step for that sphere.
            memberships = await db.fetch(d.memberships, user_id)
            if memberships:
                for row in memberships:
                    await db.fetch(d.requeue, user_id, row[0])
                return False
            for sql in (d.delete_mentions, d.delete_tokens, d.delete_user):
                await db.fetch(sql, user_id)
        return True

    async def finish_account_deletion(
        self, user_id: UserId, *, now_ms: int, audit: AuditEntry
    ) -> None:
        d = self._d
        async with self._writing() as db:
            if await db.fetch(d.done, now_ms, user_id):
                await db.fetch(d.delete_progress, user_id)
                await _audit(db, audit, user_id)

    async def set_deletion_state(self, user_id: UserId, state: DeletionState) -> None:
        async with self._writing() as db:
            await db.fetch(self._d.set_state, state.value, user_id)
