"""Exports: a user's data, or a sphere's history, as one zip archive streamed over HTTP.

Theory of operation. An export is planned, then streamed. The plan counts, with short reads,
what each member of the archive will hold (the counts travel in the response's headers, so a
client shows progress against a known total) and fixes where it ends: a user's events up to
the last offset each sphere had then, a sphere's history up to its head then. The export is
audited when planned, with its counts and never its content (the server's audit log for a
user's export, the sphere's for a sphere's). Streaming then reads the store page by page
(``storage.export``; never the whole set), writes each page into the archive in a worker
thread and hands the compressed bytes to the response, whose sending waits for the client: a
slow reader slows the reads, and memory holds about one page whatever the archive's size.
The manifest, written last, counts the lines actually written.

Limits: ``MAX_RUNNING_EXPORTS`` archives stream at once on a node; one more is refused with
``unavailable`` (retryable). ``--member-exports off`` refuses users their own export
(``forbidden``, ``MEMBER_EXPORTS_OFF``); a server administrator's export of a user and a
sphere administrator's export of their sphere stay available.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request

from protocol import (
    CloisonError,
    ErrorCode,
    ExportInfo,
    Message,
    Privacy,
    ProtocolViolation,
    SphereId,
    UserId,
)
from server.privacy.archive import Row
from server.privacy.sphere_export import sphere_archive
from server.privacy.streaming import (
    FORMAT,
    PAGE_ROWS,
    SCHEMA_VERSION,
    ArchiveResponse,
    ExportSlots,
    Member,
    Pages,
    archive_headers,
    audit_detail,
    count_lines,
    message_line,
    sphere_audit_line,
    stamp,
    start,
    stream_archive,
)
from storage import AuditEntry, AuthoredSpan, Store, UserRecord, sphere_key

EXPORT_ACTION = "data_exported"  # the server audit log's action for a user's export
MEMBER_EXPORTS_OFF = "member exports are disabled on this server; ask an administrator"
# Why 4096: the offsets one read of a user's events covers; it bounds the read's work in a
# sphere where others wrote most events, and is large enough that a sphere of mostly theirs
# still fills pages of PAGE_ROWS.
WINDOW_OFFSETS = 4096


class UserExport:
    """Everything of one user: planned by ``plan``, streamed by ``chunks``.

    ``private`` says whether the user's direct conversations are in it: in their own export,
    yes; in an administrator's, no. Without them the archive still lists the conversations
    (memberships, read markers: that they exist, not what they say), but no message, reaction
    or name of theirs, and its manifest says so (``private_messages``, ``withheld_spheres``).
    """

    def __init__(
        self, store: Store, user: UserRecord, *, actor: str, now_ms: int, private: bool = True
    ) -> None:
        self._store = store
        self._user = user
        self._actor = actor
        self._now_ms = now_ms
        self._private = private
        self._spans: list[AuthoredSpan] = []
        self._withheld: set[SphereId] = set()
        self.counts: dict[str, int] = {}

    @property
    def filename(self) -> str:
        return f"cloison-export-{self._user.user_id}-{stamp(self._now_ms)}.zip"

    async def plan(self) -> dict[str, int]:
        """Count what the archive will hold, fix where it ends, and audit the export."""
        store, user_id = self._store, self._user.user_id
        after: SphereId | None = None
        while page := await store.authored_spheres(user_id, after=after, limit=PAGE_ROWS):
            for sphere_id in page:
                if not self._private and await store.is_direct(sphere_id):
                    self._withheld.add(sphere_id)
                    continue
                span = await store.authored_span(sphere_id, user_id)
                if span is not None:
                    self._spans.append(span)
            after = page[-1]
        memberships = await count_lines(self._memberships())
        rows = await store.count_user_rows(user_id)
        self.counts = {
            "profile.json": 1,
            "tokens.jsonl": await count_lines(self._tokens()),
            "memberships.jsonl": memberships,
            "read_markers.jsonl": memberships,
            "messages.jsonl": sum(span.writings for span in self._spans),
            "reactions.jsonl": sum(span.reactions for span in self._spans),
            "invitations.jsonl": rows["invitations"],
            "join_requests.jsonl": rows["join_requests"],
            # With the entry of this export, written below.
            "audit.jsonl": rows["server_audit"] + 1 + rows["sphere_audit"],
        }
        entry = AuditEntry(
            self._actor, EXPORT_ACTION, user_id, self._now_ms, detail=audit_detail(self.counts)
        )
        await store.record_audit(entry)
        return self.counts

    def chunks(self) -> AsyncIterator[bytes]:
        members = [
            Member("profile.json", self._profile),
            Member("tokens.jsonl", self._tokens),
            Member("memberships.jsonl", self._memberships),
            Member("read_markers.jsonl", self._read_markers),
            Member("messages.jsonl", self._messages, writing_line),
            Member("reactions.jsonl", self._reactions),
            Member("invitations.jsonl", self._invitations),
            Member("join_requests.jsonl", self._join_requests),
            Member("audit.jsonl", self._audit),
        ]
        return stream_archive(members, self._manifest, f"user {self._user.user_id}")

    def _manifest(self, written: dict[str, int]) -> Row:
        return {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "kind": "user",
            "user_id": self._user.user_id,
            "requested_by": self._actor,
            "generated_ms": self._now_ms,
            "server_version": importlib.metadata.version("cloison"),
            "announced": self.counts,
            "counts": written,
            # Direct conversations are their participants' only: an administrator's export
            # leaves out what the user wrote in them (the count: conversations they wrote in).
            "private_messages": "included" if self._private else "excluded",
            "withheld_spheres": len(self._withheld),
        }

    # -- the members, page by page ---------------------------------------------------------

    async def _profile(self) -> Pages:
        user = self._user
        yield [
            {
                "user_id": user.user_id,
                "name": user.name,
                "kind": user.kind.value,
                "is_admin": user.is_admin,
                "created_ms": user.created_ms,
                "disabled_ms": user.disabled_ms,
            }
        ]

    async def _tokens(self) -> Pages:
        cursor: tuple[int, str] | None = None
        while True:
            page = await self._store.list_tokens(
                self._user.user_id, now_ms=self._now_ms, before=cursor, limit=PAGE_ROWS
            )
            yield [
                {
                    "token_id": t.token_id,
                    "kind": t.kind.value,
                    "label": t.label,
                    "created_ms": t.created_ms,
                    "expires_ms": t.expires_ms,
                    "last_used_ms": t.last_used_ms,
                    "issued_by": t.issued_by,
                }
                for t in page.tokens
            ]
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def _spheres(self) -> AsyncIterator[list[Any]]:
        after = None
        while page := await self._store.user_spheres(
            self._user.user_id, limit=PAGE_ROWS, after=after
        ):
            yield page
            if len(page) < PAGE_ROWS:
                return
            after = sphere_key(page[-1])

    async def _memberships(self) -> Pages:
        async for page in self._spheres():
            yield [
                {
                    "sphere_id": s.sphere_id,
                    "sphere_name": s.name if self._shows(s.privacy) else None,
                    "privacy": s.privacy.value,
                    "role": s.role.value if s.role is not None else None,
                    "history_from": s.history_from,
                    "charter_accepted": s.charter_accepted,
                    "muted_until_ms": s.muted_until_ms,
                }
                for s in page
            ]

    def _shows(self, privacy: Privacy) -> bool:
        """Is what a sphere of ``privacy`` holds (its name too) in this archive?"""
        return self._private or privacy is not Privacy.DIRECT

    async def _read_markers(self) -> Pages:
        async for page in self._spheres():
            yield [{"sphere_id": s.sphere_id, "read_offset": s.read_offset} for s in page]

    async def _messages(self) -> Pages:
        for span in self._spans:
            after = span.first - 1
            while after < span.last:
                until = min(after + WINDOW_OFFSETS, span.last)
                events = await self._store.authored_events(
                    span.sphere_id, self._user.user_id, after=after, until=until, limit=PAGE_ROWS
                )
                yield events
                after = events[-1].offset if len(events) == PAGE_ROWS else until

    async def _reactions(self) -> Pages:
        for span in self._spans:
            key = None
            while page := await self._store.user_reactions(
                span.sphere_id, self._user.user_id, after=key, limit=PAGE_ROWS
            ):
                yield [
                    {
                        "sphere_id": r.sphere_id,
                        "target": r.target,
                        "emoji": r.emoji,
                        "offset": r.offset,
                    }
                    for r in page
                ]
                key = (page[-1].target, page[-1].emoji)

    async def _invitations(self) -> Pages:
        after = None
        user_id = self._user.user_id
        while page := await self._store.user_invitations(user_id, after=after, limit=PAGE_ROWS):
            yield [
                {
                    "invitation_id": i.invitation_id,
                    "direction": "received" if i.invitee_id == user_id else "sent",
                    "sphere_id": i.sphere_id,
                    "inviter_id": i.inviter_id,
                    "invitee_id": i.invitee_id,
                    "role": i.role,
                    "created_ms": i.created_ms,
                    "expires_ms": i.expires_ms,
                    "state": i.state,
                }
                for i in page
            ]
            after = page[-1].invitation_id

    async def _join_requests(self) -> Pages:
        after = None
        user_id = self._user.user_id
        while page := await self._store.user_join_requests(user_id, after=after, limit=PAGE_ROWS):
            yield [
                {
                    "sphere_id": r.sphere_id,
                    "comment": r.comment,
                    "created_ms": r.created_ms,
                    "state": r.state,
                }
                for r in page
            ]
            after = page[-1].sphere_id

    async def _audit(self) -> Pages:
        user_id = self._user.user_id
        seq = 0
        while server := await self._store.user_audit(user_id, after=seq, limit=PAGE_ROWS):
            yield [
                {
                    "log": "server",
                    "seq": e.seq,
                    "ts_ms": e.ts_ms,
                    "actor": e.actor,
                    "action": e.action,
                    "user_id": e.user_id,
                    "token_id": e.token_id,
                    "detail": e.detail,
                }
                for e in server
            ]
            seq = server[-1].seq
        seq = 0
        while spheres := await self._store.user_sphere_audit(user_id, after=seq, limit=PAGE_ROWS):
            yield [{"log": "sphere", **sphere_audit_line(e)} for e in spheres]
            seq = spheres[-1].seq


def not_head(request: Request) -> None:
    """Refuse a HEAD of an export route (the framework answers HEAD with GET's handler): it
    would make, audit and discard a whole archive."""
    if request.method == "HEAD":
        raise ProtocolViolation("an export is downloaded with GET; HEAD would make one")


def writing_line(event: Message) -> Row:
    """A line of ``messages.jsonl``: the event without its author (always the user)."""
    row = dict(message_line(event))
    row.pop("author_id", None)
    return row


class Exports:
    """The exports of one node: the policy, and the slots they stream in."""

    def __init__(self, store: Store, *, member_exports: bool) -> None:
        self._store = store
        self._member_exports = member_exports
        self.slots = ExportSlots()

    async def own(self, user: UserRecord, *, now_ms: int) -> ArchiveResponse:
        """A user's export of their own data.

        Raises:
            CloisonError: ``forbidden`` when member exports are off; ``unavailable`` when
                ``MAX_RUNNING_EXPORTS`` exports are running.
        """
        if not self._member_exports:
            raise CloisonError(MEMBER_EXPORTS_OFF, code=ErrorCode.FORBIDDEN)
        return await self._user(user, actor=user.user_id, now_ms=now_ms)

    async def of_user(self, actor: str, user_id: UserId, *, now_ms: int) -> ArchiveResponse:
        """A server administrator's export of a user's data (an access request), whatever
        the policy of member exports, without the content of their direct conversations.

        Raises:
            CloisonError: ``not_found`` for an unknown user; ``unavailable`` as ``own``.
        """
        user = await self._store.get_user(user_id)
        if user is None:
            raise CloisonError("no such user", code=ErrorCode.NOT_FOUND)
        return await self._user(user, actor=actor, now_ms=now_ms, private=False)

    async def sphere(self, actor_id: UserId, info: ExportInfo, *, now_ms: int) -> ArchiveResponse:
        """A sphere administrator's export of what ``info`` (their ``export_sphere``, checked
        by the dispatcher) describes."""
        return await sphere_archive(self._store, self.slots, info, actor_id, now_ms=now_ms)

    async def _user(
        self, user: UserRecord, *, actor: str, now_ms: int, private: bool = True
    ) -> ArchiveResponse:
        export = UserExport(self._store, user, actor=actor, now_ms=now_ms, private=private)
        release = await start(self.slots, export.plan)
        headers = archive_headers(export.filename, export.counts)
        return ArchiveResponse(export.chunks(), headers, release)
