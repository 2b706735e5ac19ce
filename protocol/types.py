"""Identifiers and small value types shared by every layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NewType

UserId = NewType("UserId", str)
SphereId = NewType("SphereId", str)
OrgId = NewType("OrgId", str)  # an organisation: the tenant boundary
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
    """A sphere's type: who may see, enter, read and post in it (``docs/governance.md``)."""

    PRIVATE = "private"  # sealed: entered by invitation only; non-members cannot learn it exists
    OPEN = "open"  # any user may enter (at once, or on approval); only members read
    PUBLIC = "public"  # every user may read; posting needs membership
    RESTRICTED = "restricted"  # announcements: staff post; members read, react and reply
    # Private messages between 2 to 10 participants, all members: nobody administers it, and
    # nobody else (sphere staff, organisation managers, server administrators) reads or sees it.
    DIRECT = "direct"
    # Every member of the organisation is a member, and only while they are one; sealed to
    # everyone else; members cannot leave it.
    GLOBAL = "global"


class HistoryMode(StrEnum):
    """What a newcomer may read of what was sequenced before they joined."""

    SINCE_JOINING = "since_joining"  # only events after their joining (the default)
    FULL = "full"  # the whole history


class JoinPolicy(StrEnum):
    """How a user enters a sphere they may see (open, public and restricted spheres)."""

    FREE = "free"  # at once, with ``join``
    APPROVAL = "approval"  # by ``request_join``, accepted by an administrator
    INVITATION = "invitation"  # only by invitation (private spheres always are)


class Role(StrEnum):
    """A member's role in a sphere, most powerful first (rights: ``server.access.rights``)."""

    OWNER = "owner"  # an administrator who also holds the sphere: type, history, deletion
    ADMIN = "admin"  # moderation, invitations, settings
    PUBLISHER = "publisher"  # pins; posts in restricted spheres
    MEMBER = "member"
    VISITOR = "visitor"  # from outside: reads and posts; no member list; never promoted at once

    @property
    def rank(self) -> int:
        return _ROLE_RANK[self]


_ROLE_RANK = {Role.OWNER: 5, Role.ADMIN: 4, Role.PUBLISHER: 3, Role.MEMBER: 2, Role.VISITOR: 1}


class OrgRole(StrEnum):
    """A user's role in an organisation (rights: ``server.access.org_rights``)."""

    MANAGER = "manager"  # governs the organisation; reads a sphere only as its visible member
    MEMBER = "member"


class UserKind(StrEnum):
    HUMAN = "human"
    BOT = "bot"


class EventKind(StrEnum):
    """What an event in a sphere's stream does."""

    POST = "post"  # a new message
    EDIT = "edit"  # replaces the body of the post at ``target``
    DELETE = "delete"  # turns the post at ``target`` into a tombstone
    MEMBER = "member"  # a membership or role change: ``member_id`` now has ``role``
    SPHERE = "sphere"  # the sphere's settings changed: the event carries all of them
    REACT = "react"  # ``author_id`` reacted to the post at ``target`` with ``emoji``
    UNREACT = "unreact"  # ``author_id`` withdrew that reaction
    PIN = "pin"  # the post at ``target`` is pinned
    UNPIN = "unpin"  # the post at ``target`` is no longer pinned


class MemberAction(StrEnum):
    """What a ``member`` event did; ``role`` in the event is the member's role afterwards."""

    JOINED = "joined"  # the member joined by themselves (or created the sphere)
    LEFT = "left"  # the member left by themselves
    ADDED = "added"  # an admin or owner added them
    REMOVED = "removed"  # an admin or owner removed them
    ROLE_CHANGED = "role_changed"  # an owner changed their role
    ACCEPTED = "accepted"  # the member accepted an invitation
    ADMITTED = "admitted"  # an administrator accepted the member's join request
    BANNED = "banned"  # an administrator banned them (they are no longer a member)
    UNBANNED = "unbanned"  # the ban was lifted (they are still not a member)
    MUTED = "muted"  # they read but may not write until ``until_ms``
    UNMUTED = "unmuted"  # the mute was lifted
    DELETED = "deleted"  # their account was deleted (the event has no author and no name)
    # A manager of the sphere's organisation made themselves one of its administrators.
    APPOINTED = "appointed"

    @property
    def ends_membership(self) -> bool:
        return self in (
            MemberAction.LEFT,
            MemberAction.REMOVED,
            MemberAction.BANNED,
            MemberAction.DELETED,
        )


class ReportReason(StrEnum):
    """Why a member reports a post to the sphere's administrators."""

    SPAM = "spam"
    ABUSIVE = "abusive"
    OTHER = "other"


class InvitationState(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    REVOKED = "revoked"
    EXPIRED = "expired"


class RequestState(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REFUSED = "refused"
    WITHDRAWN = "withdrawn"
