"""What the store gives an export: everything of one user, read in pages.

Every read here is a page with a keyset (never the whole data set) and a bounded amount of
work per call, so an export of any size runs as many short reads that other requests
interleave with. There is no index by author (an events table indexed by author would cost
every append a write), so a user's events are found sphere by sphere: ``authored_spheres``
names the spheres in which the user wrote anything (one index probe per sphere),
``authored_span`` the offsets their events lie between, and ``authored_events`` reads a
window of offsets of one sphere, at most ``limit`` rows of it. The audit logs, invitations and
join requests have no index by user either: their reads and counts scan those tables, which
hold a row per act, not per message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from protocol import Message, SphereId, UserId
from storage.audit import SphereAuditEntry

if TYPE_CHECKING:  # storage.base's Store inherits Export: its names are only annotations here
    from storage.base import AuditEntry


@dataclass(frozen=True, slots=True)
class AuthoredSpan:
    """Where a user's events lie in one sphere: offsets ``first`` to ``last``; ``writings``:
    their posts, edits and deletes; ``reactions``: the reactions of theirs standing now."""

    sphere_id: SphereId
    first: int
    last: int
    writings: int
    reactions: int


@dataclass(frozen=True, slots=True)
class ReactionRecord:
    """A reaction standing now: ``emoji`` on the post at ``target``, made by the event at
    ``offset``."""

    sphere_id: SphereId
    target: int
    emoji: str
    offset: int


@dataclass(frozen=True, slots=True)
class InvitationRecord:
    """An invitation as stored, in any state (``pending`` ones may have expired)."""

    invitation_id: str
    sphere_id: SphereId
    inviter_id: UserId
    invitee_id: UserId
    role: str
    created_ms: int
    expires_ms: int
    state: str


@dataclass(frozen=True, slots=True)
class JoinRequestRecord:
    """A join request as stored, in any state."""

    sphere_id: SphereId
    user_id: UserId
    comment: str | None
    created_ms: int
    state: str


# Where a page of reactions ends in one sphere: (target, emoji).
ReactionKey = tuple[int, str]


class Export(Protocol):
    async def authored_spheres(
        self, user_id: UserId, *, after: SphereId | None, limit: int
    ) -> list[SphereId]:
        """Spheres in which ``user_id`` authored an event (any kind), by ascending id, after
        ``after``."""
        ...

    async def authored_span(self, sphere_id: SphereId, user_id: UserId) -> AuthoredSpan | None:
        """Where the user's events lie in the sphere and how many there are (None: none)."""
        ...

    async def authored_events(
        self, sphere_id: SphereId, user_id: UserId, *, after: int, until: int, limit: int
    ) -> list[Message]:
        """The user's posts (current state: the body as last edited, none once deleted),
        edits and deletes with ``after`` < offset <= ``until``, ascending, at most ``limit``.
        Reads the offsets of the window, whoever wrote them: keep ``until - after`` small."""
        ...

    async def user_reactions(
        self, sphere_id: SphereId, user_id: UserId, *, after: ReactionKey | None, limit: int
    ) -> list[ReactionRecord]:
        """The user's standing reactions in the sphere, by (target, emoji), after ``after``."""
        ...

    async def user_invitations(
        self, user_id: UserId, *, after: str | None, limit: int
    ) -> list[InvitationRecord]:
        """Invitations the user made or received, in any state, by id, after ``after``."""
        ...

    async def user_join_requests(
        self, user_id: UserId, *, after: SphereId | None, limit: int
    ) -> list[JoinRequestRecord]:
        """The user's join requests, in any state, by sphere id, after ``after``."""
        ...

    async def user_audit(self, user_id: UserId, *, after: int, limit: int) -> list[AuditEntry]:
        """Server audit entries by or about the user (actor or user_id), oldest first, with
        seq > ``after``."""
        ...

    async def user_sphere_audit(
        self, user_id: UserId, *, after: int, limit: int
    ) -> list[SphereAuditEntry]:
        """Sphere audit entries (every sphere) in which the user is actor or target, oldest
        first, with seq > ``after``; but for reports of their posts (the entry names the
        reporter, whom the author is not told)."""
        ...

    async def sphere_audit_after(
        self, sphere_id: SphereId, *, after: int, limit: int
    ) -> list[SphereAuditEntry]:
        """The sphere's audit entries, oldest first, with seq > ``after``."""
        ...

    async def count_user_rows(self, user_id: UserId) -> dict[str, int]:
        """How many invitations, join requests, server and sphere audit entries the user has
        (keys ``invitations``, ``join_requests``, ``server_audit``, ``sphere_audit``)."""
        ...

    async def count_history(self, sphere_id: SphereId, *, floor: int, until: int) -> int:
        """How many events a ``history`` read from ``floor`` up to ``until`` returns."""
        ...

    async def record_audit(self, entry: AuditEntry) -> None:
        """Write one entry of the server's audit log, in a transaction of its own."""
        ...

    async def record_sphere_audit(self, entry: SphereAuditEntry) -> None:
        """Write one entry of a sphere's audit log, in a transaction of its own."""
        ...
