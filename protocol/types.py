"""Identifiers and small value types shared by every layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NewType

UserId = NewType("UserId", str)
SphereId = NewType("SphereId", str)
ConnId = NewType("ConnId", str)
# A client-chosen idempotency key, unique per (sphere, author).
MessageId = NewType("MessageId", str)


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """A point in a sphere's event stream.

    ``offset`` is the sequence number of the last event at that point: per sphere, strictly
    increasing, gapless, assigned by the store (0 means "before the first event").
    ``epoch`` names one incarnation of the stream; if it ever changes, offsets from the old
    epoch mean nothing in the new one.
    """

    offset: int = field(metadata={"ge": 0, "le": 2**63 - 1})
    epoch: str = field(metadata={"min_chars": 1, "max_chars": 64})


class Privacy(StrEnum):
    """Who may see a sphere, from most to least sealed."""

    PRIVATE = "private"  # members only; non-members cannot learn it exists
    OPEN = "open"  # listed to every user; anyone may join; only members read
    PUBLIC = "public"  # listed; every authenticated user may read; members write


class Role(StrEnum):
    """A member's role in a sphere, most powerful first."""

    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"

    @property
    def rank(self) -> int:
        return _ROLE_RANK[self]


_ROLE_RANK = {Role.OWNER: 3, Role.ADMIN: 2, Role.MEMBER: 1}


class UserKind(StrEnum):
    HUMAN = "human"
    BOT = "bot"


class EventKind(StrEnum):
    """What an event in a sphere's stream does."""

    POST = "post"  # a new message
    EDIT = "edit"  # replaces the body of the post at ``target``
    DELETE = "delete"  # turns the post at ``target`` into a tombstone
    MEMBER = "member"  # a membership or role change: ``member_id`` now has ``role``
    SPHERE = "sphere"  # the sphere's settings changed: ``privacy`` is its new privacy


class MemberAction(StrEnum):
    """What a ``member`` event did; ``role`` in the event is the member's role afterwards."""

    JOINED = "joined"  # the member joined by themselves (or created the sphere)
    LEFT = "left"  # the member left by themselves
    ADDED = "added"  # an admin or owner added them
    REMOVED = "removed"  # an admin or owner removed them
    ROLE_CHANGED = "role_changed"  # an owner changed their role

    @property
    def ends_membership(self) -> bool:
        return self in (MemberAction.LEFT, MemberAction.REMOVED)
