"""The storage interface: what the server needs from any backend.

A backend implements two narrow protocols, ``MessageLog`` (each sphere's ordered event stream)
and ``Directory`` (users, tokens, spheres, memberships, read markers); ``Store`` is both plus
its lifecycle. Every backend passes the same contract suite (``tests/contract/test_store.py``).

The store is the sequencer: ``append`` assigns the next offset of the sphere in the same
transaction that stores the event, from a per-sphere counter, so offsets are gapless even when
a transaction rolls back, and returns only once the event is durable.

Membership is part of the stream. Every change of a sphere's members (``create_sphere``,
``change_member``) or of its privacy (``update_sphere``) writes a ``member`` or ``sphere``
event with the sphere's next offset in the transaction that changes the rows, and decides on
rows read inside that transaction, under the lock that orders the sphere's appends. And an
append is authorised when its group commits: an author who is not a member of the sphere at
that moment fails with ``NotMemberError``. So no post is ever sequenced after its author's
removal, whatever a gateway believed when it accepted the write.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from protocol import (
    CloisonError,
    ErrorCode,
    EventKind,
    MemberAction,
    MemberInfo,
    Message,
    MessageId,
    Privacy,
    Role,
    SphereId,
    SphereSummary,
    StreamPosition,
    UserId,
    UserKind,
)


@dataclass(frozen=True, slots=True)
class UserRecord:
    user_id: UserId
    name: str
    kind: UserKind
    is_admin: bool  # may use the server administration API
    created_ms: int


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A bearer token as stored: only a hash of its secret part is kept."""

    token_id: str
    user_id: UserId
    secret_hash: bytes
    created_ms: int
    expires_ms: int | None
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class SphereRecord:
    sphere_id: SphereId
    name: str
    privacy: Privacy
    epoch: str
    offset: int  # offset of the latest event, 0 when the stream is empty
    created_ms: int

    @property
    def position(self) -> StreamPosition:
        return StreamPosition(self.offset, self.epoch)


@dataclass(frozen=True, slots=True)
class Draft:
    """An event to append; the store gives it its offset.

    ``message_id`` is the author's idempotency key: appending a draft whose
    (sphere, author, message_id) is already stored returns the stored event unchanged.
    """

    kind: EventKind
    message_id: MessageId
    author_id: UserId
    ts_ms: int
    body: str | None = None
    target: int | None = None  # offset of the post an edit or delete changes


@dataclass(frozen=True, slots=True)
class AppendResult:
    event: Message
    duplicate: bool  # True: the draft's key was already stored; nothing new was written


@dataclass(frozen=True, slots=True)
class MembershipState:
    """What a membership change is decided on, read inside the transaction that makes it."""

    sphere: SphereRecord
    actor_role: Role | None  # the role of who asks for the change
    target_role: Role | None  # the role of whom it changes (the actor for join and leave)
    owners: int  # members with the owner role


@dataclass(frozen=True, slots=True)
class MemberChange:
    """A decided change: the target's role afterwards (None: no longer a member), and why."""

    role: Role | None
    action: MemberAction


# Decides a change from the state read in its transaction: the change to make, None for
# "nothing to do", or raises a CloisonError to refuse (the transaction then writes nothing).
DecideMember = Callable[[MembershipState], MemberChange | None]
# Checks a sphere update against the sphere and the actor's role; raises to refuse.
CheckUpdate = Callable[[SphereRecord, Role | None], None]


class StoreError(CloisonError):
    """The backend failed; the operation may be retried."""

    code = ErrorCode.UNAVAILABLE


class NotFoundError(CloisonError):
    """A referenced user, sphere or event does not exist."""

    code = ErrorCode.NOT_FOUND


class TargetGoneError(CloisonError):
    """An edit or delete names a post that does not exist, is not a post, or is deleted."""

    code = ErrorCode.NOT_FOUND


class NotMemberError(CloisonError):
    """An append's author was not a member of the sphere when its group committed.

    The server tells the author ``not_found`` or ``forbidden``, as ``server.access`` decides.
    """

    code = ErrorCode.FORBIDDEN


class MessageLog(Protocol):
    async def append(self, sphere_id: SphereId, draft: Draft) -> AppendResult:
        """Durably append ``draft`` to the sphere's stream.

        Appends are sequenced in the order their calls start: a caller that starts appends
        one after another (without awaiting each) gets offsets in that order. The server
        relies on this to keep each sender's pipelined writes in send order.

        Raises:
            NotFoundError: no such sphere.
            NotMemberError: the author is not a member of the sphere at commit time (a
                duplicate of a stored draft is returned nonetheless).
            TargetGoneError: an edit/delete whose target is not a live post.
            StoreError: the backend failed; nothing was written.
        """
        ...

    async def events_after(self, sphere_id: SphereId, after: int, limit: int) -> list[Message]:
        """Events with offset > ``after``, ascending, at most ``limit``, in their current state."""
        ...

    async def history(
        self, sphere_id: SphereId, *, before: int | None, after: int | None, limit: int
    ) -> tuple[list[Message], bool]:
        """Posts (current state, tombstones included) and member and sphere events, ascending
        by offset; edits and deletes show only in the state of their post.

        With ``after``: the oldest ``limit`` events above it. Otherwise the newest ``limit``
        events below ``before`` (or the newest of all). Returns (events, has_more), where
        has_more says whether more lie beyond the page in the paging direction.
        """
        ...

    async def get_event(self, sphere_id: SphereId, offset: int) -> Message | None: ...

    async def heads(self, sphere_ids: Sequence[SphereId]) -> dict[SphereId, StreamPosition]:
        """The current position of each sphere, in one read (unknown spheres are left out)."""
        ...


class Directory(Protocol):
    async def create_user(
        self, name: str, kind: UserKind, *, is_admin: bool, now_ms: int
    ) -> UserRecord: ...

    async def get_user(self, user_id: UserId) -> UserRecord | None: ...

    async def add_token(self, token: TokenRecord) -> None: ...

    async def get_token(self, token_id: str) -> TokenRecord | None: ...

    async def revoke_token(self, token_id: str) -> bool:
        """Mark a token revoked; False when there is no such token."""
        ...

    async def create_sphere(
        self, name: str, privacy: Privacy, owner_id: UserId, *, now_ms: int
    ) -> SphereRecord:
        """Create a sphere with a fresh epoch owned by ``owner_id``, in one transaction that
        also writes the owner's ``member`` event (``joined``, offset 1).

        Raises:
            NotFoundError: no such user.
        """
        ...

    async def get_sphere(self, sphere_id: SphereId) -> SphereRecord | None: ...

    async def update_sphere(
        self,
        sphere_id: SphereId,
        actor_id: UserId,
        check: CheckUpdate,
        *,
        name: str | None,
        privacy: Privacy | None,
        now_ms: int,
    ) -> tuple[SphereRecord, Message | None]:
        """Change a sphere's name and/or privacy, if ``check`` (called in the transaction with
        the sphere and the actor's role) allows it.

        Returns:
            The sphere as updated, and the ``sphere`` event written when its privacy changed.

        Raises:
            NotFoundError: no such sphere.
            CloisonError: whatever ``check`` raised; nothing was written.
        """
        ...

    async def sphere_access(
        self, sphere_id: SphereId, user_id: UserId
    ) -> tuple[SphereRecord | None, Role | None]:
        """The sphere and the user's role in it, in one read (either may be None)."""
        ...

    async def sphere_members(
        self, sphere_id: SphereId
    ) -> tuple[SphereRecord, dict[UserId, Role]] | None:
        """The sphere (with its position) and every member's role, in one consistent read."""
        ...

    async def change_member(
        self,
        sphere_id: SphereId,
        actor_id: UserId,
        target_id: UserId,
        decide: DecideMember,
        *,
        now_ms: int,
    ) -> Message | None:
        """Add, remove or change the role of ``target_id``, as ``decide`` rules on the state
        read inside the transaction (so no rule is checked on stale rows).

        The member row and the ``member`` event (the sphere's next offset, authored by
        ``actor_id``, with the target's name at this time) are written in one transaction.

        Returns:
            The event, or None when ``decide`` found nothing to do.

        Raises:
            NotFoundError: no such sphere or no such target user.
            CloisonError: whatever ``decide`` raised; nothing was written.
        """
        ...

    async def list_members(self, sphere_id: SphereId) -> list[MemberInfo]: ...

    async def get_role(self, sphere_id: SphereId, user_id: UserId) -> Role | None: ...

    async def user_spheres(self, user_id: UserId) -> list[SphereSummary]:
        """The user's spheres with role, read marker and unread post count."""
        ...

    async def discoverable_spheres(self, limit: int) -> list[SphereSummary]:
        """Open and public spheres, newest first (role and unread left empty)."""
        ...

    async def set_read_marker(self, sphere_id: SphereId, user_id: UserId, offset: int) -> int:
        """Move the read marker forward (never back); returns the marker now stored."""
        ...


class Store(MessageLog, Directory, Protocol):
    async def aclose(self) -> None:
        """Finish pending writes, then release every connection."""
        ...
