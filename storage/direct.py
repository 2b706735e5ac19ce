"""Private messages: the ``DirectConversations`` protocol and what it answers.

A direct conversation is a sphere of type ``direct`` (``Privacy.DIRECT``): its participants
are all members (role ``member``), its history is ``full``, it is never listed. It is opened
in a *context*: an organisation every participant belongs to, or a sphere every participant is
a member of (a visitor from another organisation may so write privately to the members of the
sphere they visit). The conversation belongs to the context's organisation.

The store decides who may be in it on the rows of the transaction that opens it: a participant
who is not in the context is refused with the very error an unknown user id gets. Two people
have one conversation per context (``direct_pairs``): opening it again returns it, unless one
of them left it, and then a new one is opened. A group conversation is new each time. A
conversation its last participant leaves is deleted (``close_if_empty``); so is one whose last
participant's account is deleted (``storage.deletion``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from protocol import Message, OrgId, SphereId, SphereSummary, UserId

if TYPE_CHECKING:  # storage.base composes the protocol below into Store
    from storage.base import SphereRecord

ORG_NOT_FOUND = "organisation not found"
SPHERE_NOT_FOUND = "sphere not found"


def unknown_user(user_id: UserId) -> str:
    """What a participant who does not exist or is not in the context is told (the same)."""
    return f"no user {user_id}"


@dataclass(frozen=True, slots=True)
class DirectContext:
    """Where a conversation is opened: an organisation, or a sphere (with its organisation)."""

    org_id: OrgId
    sphere_id: SphereId | None = None  # None: the organisation itself


@dataclass(frozen=True, slots=True)
class DirectOpening:
    """What ``open_direct`` did: the conversation, and the member events it wrote (none when
    the two people already had this conversation)."""

    sphere: SphereRecord
    events: tuple[Message, ...]

    @property
    def created(self) -> bool:
        return bool(self.events)


class DirectConversations(Protocol):
    async def open_direct(
        self,
        creator_id: UserId,
        others: Sequence[UserId],
        *,
        org_id: OrgId | None,
        context_sphere_id: SphereId | None,
        name: str,
        now_ms: int,
    ) -> DirectOpening:
        """Open a direct conversation between ``creator_id`` and ``others`` (distinct, not the
        creator, 1 to 9 of them), in one transaction: the sphere, every participant's
        ``member`` event (the creator ``joined``, the others ``added``) and the
        ``sphere_created`` audit entry. With exactly one other, the pair's existing
        conversation in the same context is returned instead, if both are still in it.

        The context is ``context_sphere_id`` if given (the conversation then belongs to that
        sphere's organisation), else ``org_id``.

        Raises:
            NotFoundError: the context does not exist or the creator is not in it
                (``SPHERE_NOT_FOUND``, ``ORG_NOT_FOUND``); a participant does not exist or is
                not in the context (``no user <id>``, the same for both).
        """
        ...

    async def close_if_empty(
        self, sphere_id: SphereId, actor_id: UserId, *, now_ms: int
    ) -> Message | None:
        """Delete a direct conversation nobody is in any more (``actor_id`` left it last),
        with every row of it, as ``delete_sphere`` does (``sphere_deleted`` in the server's
        audit log), unless a legal hold keeps it.

        Returns:
            The closing ``sphere`` event (``deleted``); None when the sphere is gone, is not
            a direct conversation, still has a participant, or is held.
        """
        ...

    async def with_participants(
        self, summaries: Sequence[SphereSummary], reader: UserId
    ) -> list[SphereSummary]:
        """``summaries`` with, for each direct conversation among them, its participants but
        ``reader`` (one read for the whole list; the others unchanged)."""
        ...

    async def is_direct(self, sphere_id: SphereId) -> bool:
        """Is the sphere a direct conversation? (False for an unknown sphere.)"""
        ...
