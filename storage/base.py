"""The storage interface: what the server needs from any backend.

A backend implements two narrow protocols, ``MessageLog`` (each sphere's ordered event stream)
and ``Directory`` (users, tokens, spheres, memberships, read markers); ``Store`` is both plus
its lifecycle. Every backend passes the same contract suite (``tests/contract/test_store.py``).

The store is the sequencer: ``append`` assigns the next offset of the sphere in the same
transaction that stores the event, from a per-sphere counter, so offsets are gapless even when
a transaction rolls back, and returns only once the event is durable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from protocol import (
    CloisonError,
    ErrorCode,
    EventKind,
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

# What a client is told when a write's outcome is unknown (protocol code ``unknown``).
OUTCOME_UNKNOWN_MESSAGE = (
    "the write may or may not have been stored; retry with the same message_id"
)
# The same for a change of the directory (users, tokens, spheres, members, read markers).
CHANGE_UNKNOWN_MESSAGE = "the change may or may not have been made; check before repeating it"


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


class StoreError(CloisonError):
    """The backend failed and the operation certainly had no effect; it may be retried."""

    code = ErrorCode.UNAVAILABLE


class OutcomeUnknownError(StoreError):
    """A write's commit was sent but its result never came back: it may be stored or not.

    Raised when the connection broke, timed out or was cancelled during or after COMMIT.
    Retrying with the same ``message_id`` is safe (appends are idempotent) and tells which.
    """

    code = ErrorCode.UNKNOWN

    def __init__(self, message: str = OUTCOME_UNKNOWN_MESSAGE) -> None:
        super().__init__(message)


class NotFoundError(CloisonError):
    """A referenced user, sphere or event does not exist."""

    code = ErrorCode.NOT_FOUND


class TargetGoneError(CloisonError):
    """An edit or delete names a post that does not exist, is not a post, or is deleted."""

    code = ErrorCode.NOT_FOUND


class MessageLog(Protocol):
    async def append(self, sphere_id: SphereId, draft: Draft) -> AppendResult:
        """Durably append ``draft`` to the sphere's stream.

        Appends are sequenced in the order their calls start: a caller that starts appends
        one after another (without awaiting each) gets offsets in that order. The server
        relies on this to keep each sender's pipelined writes in send order.

        Raises:
            NotFoundError: no such sphere.
            TargetGoneError: an edit/delete whose target is not a live post.
            OutcomeUnknownError: the commit's result is unknown (the draft may be stored).
            StoreError: the backend failed; nothing was written.
        """
        ...

    async def events_after(self, sphere_id: SphereId, after: int, limit: int) -> list[Message]:
        """Events with offset > ``after``, ascending, at most ``limit``, in their current state."""
        ...

    async def history(
        self, sphere_id: SphereId, *, before: int | None, after: int | None, limit: int
    ) -> tuple[list[Message], bool]:
        """Posts only (current state, tombstones included), ascending by offset.

        With ``after``: the oldest ``limit`` posts above it. Otherwise the newest ``limit``
        posts below ``before`` (or the newest of all). Returns (posts, has_more), where
        has_more says whether more posts lie beyond the page in the paging direction.
        """
        ...

    async def get_event(self, sphere_id: SphereId, offset: int) -> Message | None: ...


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
        """Create a sphere with a fresh epoch and make ``owner_id`` its owner, atomically."""
        ...

    async def get_sphere(self, sphere_id: SphereId) -> SphereRecord | None: ...

    async def update_sphere(
        self, sphere_id: SphereId, *, name: str | None, privacy: Privacy | None
    ) -> SphereRecord | None: ...

    async def get_role(self, sphere_id: SphereId, user_id: UserId) -> Role | None: ...

    async def sphere_access(
        self, sphere_id: SphereId, user_id: UserId
    ) -> tuple[SphereRecord | None, Role | None]:
        """The sphere and the user's role in it, in one read (either may be None)."""
        ...

    async def set_member(
        self, sphere_id: SphereId, user_id: UserId, role: Role, *, now_ms: int
    ) -> None:
        """Add a member or change a member's role. Raises NotFoundError for an unknown user."""
        ...

    async def remove_member(self, sphere_id: SphereId, user_id: UserId) -> bool: ...

    async def count_role(self, sphere_id: SphereId, role: Role) -> int: ...

    async def list_members(self, sphere_id: SphereId) -> list[MemberInfo]: ...

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
    async def check_writable(self) -> None:
        """Prove that a write could commit now (readiness), without writing anything.

        Raises:
            StoreError: the store cannot take writes (read-only file or directory, database
                in recovery or read-only, unreachable), with the reason as its message.
        """
        ...

    async def aclose(self) -> None:
        """Finish pending writes, then release every connection."""
        ...
