"""A sphere's event as it travels: ``Message``, and the reactions a post carries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from protocol.fields import Frame
from protocol.types import (
    EventKind,
    HistoryMode,
    JoinPolicy,
    MemberAction,
    MessageId,
    Privacy,
    Role,
    SphereId,
    UserId,
)

# Why: a post shows who reacted by name; past this many, only the count grows.
MAX_REACTION_USERS = 20


@dataclass(frozen=True, slots=True)
class ReactionCount:
    """One emoji's reactions on a post: how many, and the first ``MAX_REACTION_USERS`` users."""

    emoji: str
    count: int
    user_ids: list[UserId]


@dataclass(frozen=True, slots=True)
class LegalHold:
    """A legal hold on a sphere, set by a server administrator: while it lasts, retention
    removes nothing and no message may be deleted. Its reason is shown to administrators only."""

    since_ms: int
    until_ms: int | None = None  # None: until an administrator releases it

    def live(self, now_ms: int) -> bool:
        return self.until_ms is None or self.until_ms > now_ms


@dataclass(frozen=True, slots=True)
class Message(Frame):
    """One event of a sphere's stream, live or replayed.

    For a ``post``, ``body`` and ``edited_ms``/``deleted`` show the post's current state:
    a deleted post is a tombstone (``deleted`` true, ``body`` null). ``edit`` and ``delete``
    events name the post they change in ``target``; a deleted post's edits lose their body too.

    A ``member`` event says that ``member_id`` (``member_name`` at that time) now has ``role``
    (None: no longer a member) because of ``action``; ``author_id`` is who did it. A ``sphere``
    event carries the sphere's settings after a change, its retention period and legal hold
    too. Neither carries a body. A ``react`` or ``unreact`` event names its post in ``target``
    and its ``emoji``; ``pin`` and ``unpin`` name their post in ``target``.

    ``author_id`` is None (absent on the wire) for an event with no author: one the server
    wrote itself (a ``deleted`` member event, an owner it appointed), and everything a deleted
    account wrote once the server anonymised or erased it.
    """

    TYPE: ClassVar[str] = "message"
    sphere_id: SphereId
    offset: int
    kind: EventKind
    message_id: MessageId
    author_id: UserId | None
    ts_ms: int
    body: str | None = None
    target: int | None = None
    edited_ms: int | None = None
    deleted: bool = False
    member_id: UserId | None = None
    member_name: str | None = None
    role: Role | None = None
    action: MemberAction | None = None
    privacy: Privacy | None = None
    # Server-owned state of a post: what it answers, who it mentions, its reactions, pinned.
    reply_to: int | None = None
    mentions: list[UserId] | None = None
    reactions: list[ReactionCount] | None = None
    pinned: bool = False
    emoji: str | None = None  # react and unreact events
    until_ms: int | None = None  # a ``muted`` member event: the end of the mute
    # A ``sphere`` event carries every setting as it is afterwards.
    listed: bool | None = None
    join_policy: JoinPolicy | None = None
    history: HistoryMode | None = None
    charter_version: int | None = None
    name: str | None = None
    retention_days: int | None = None  # None: the server's default applies
    legal_hold: LegalHold | None = None
