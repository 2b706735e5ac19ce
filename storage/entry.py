"""Entering and leaving a sphere, and moderating its members: what the store keeps of it.

Invitations, join requests and bans are rows of their own (migration 0006); every change
they make to a membership goes through the same member-change path as ``change_member`` (its
``member`` event, its audit entry, the rows it writes), inside the transaction that changes
the invitation, request or ban, under the sphere's lock. Mutes live on the member's row
(``muted_until_ms``) and are enforced where appends commit (``MutedError``). The rules are the
server's: each method takes the decision to apply to the rows it read, as ``change_member``
does, so nothing is decided on rows another request changes before the write.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from protocol import (
    BanInfo,
    CloisonError,
    ErrorCode,
    Invitation,
    JoinRequestInfo,
    Message,
    Role,
    SphereId,
    UserId,
)

if TYPE_CHECKING:  # storage.base's Store inherits Entry: its names are only annotations here
    from storage.base import (
        DecideMember,
        MemberChange,
        MembershipState,
        SphereRecord,
    )
    from storage.organisations import OrgRole
    from storage.settings import MemberView

# Where a page of invitations, requests or bans ends: (created_ms or ts_ms, id).
EntryKey = tuple[int, str]


class MutedError(CloisonError):
    """The author of a write is muted in the sphere: they read, but may not speak, until then."""

    code = ErrorCode.FORBIDDEN

    def __init__(self, until_ms: int) -> None:
        until = datetime.datetime.fromtimestamp(until_ms / 1000, datetime.UTC)
        super().__init__(f"you are muted in this sphere until {until:%Y-%m-%d %H:%M:%S} UTC")
        self.until_ms = until_ms


@dataclass(frozen=True, slots=True)
class SphereStanding:
    """What a user is in a sphere, in one read: the dispatcher's rights check is made on it."""

    sphere: SphereRecord | None  # None: no such sphere
    member: MemberView | None  # None: not a member
    banned: bool = False
    # The user's role in the sphere's organisation (None: a stranger to it), and whether the
    # organisation is suspended.
    org_role: OrgRole | None = None
    org_suspended: bool = False

    @property
    def role(self) -> Role | None:
        return self.member.role if self.member is not None else None

    def muted(self, now_ms: int) -> bool:
        until_ms = self.member.muted_until_ms if self.member is not None else None
        return until_ms is not None and until_ms > now_ms


# Checks that the state allows an act that changes no membership (invite, request to join);
# raises a CloisonError to refuse.
CheckEntry = Callable[["MembershipState"], None]
# Decides the acceptance of an invitation carrying ``role``: as ``DecideMember``.
DecideAccept = Callable[["MembershipState", Role], "MemberChange | None"]
# Checks that ``actor_role`` may delete ``sphere``; raises a CloisonError to refuse.
CheckDelete = Callable[["SphereRecord", Role | None], None]
# Checks that the state's actor may revoke an invitation of ``inviter_id``.
CheckRevoke = Callable[["MembershipState", UserId], None]


class Entry(Protocol):
    """The store's part of invitations, join requests, bans, mutes, transfers and deletion."""

    async def sphere_standing(self, sphere_id: SphereId, user_id: UserId) -> SphereStanding:
        """The sphere, the user's role, mute and ban in it, in one read."""
        ...

    async def sphere_mutes(self, sphere_id: SphereId) -> dict[UserId, int]:
        """The end (ms) of every member's mute in the sphere, ended or running."""
        ...

    async def invite(
        self,
        sphere_id: SphereId,
        inviter_id: UserId,
        invitee_id: UserId,
        role: Role,
        check: CheckEntry,
        *,
        expires_ms: int,
        now_ms: int,
    ) -> Invitation:
        """Invite ``invitee_id`` with ``role`` if ``check`` allows it on the state read under
        the sphere's lock (actor: the inviter, target: the invitee). A pending invitation of
        the same invitee to the sphere is revoked by the new one. Audited ``invited``.

        Raises:
            NotFoundError: no such sphere; no such invitee (only after ``check``).
            CloisonError: whatever ``check`` raised; nothing was written.
        """
        ...

    async def revoke_invitation(
        self, invitation_id: str, actor_id: UserId, check: CheckRevoke, *, now_ms: int
    ) -> None:
        """Revoke a pending invitation if ``check`` allows it. Audited ``invitation_revoked``.

        Raises:
            NotFoundError: no such invitation.
            CloisonError: whatever ``check`` raised; ``conflict`` when it is no longer pending
                or has expired.
        """
        ...

    async def answer_invitation(
        self,
        invitation_id: str,
        invitee_id: UserId,
        decide: DecideAccept | None,
        *,
        now_ms: int,
    ) -> tuple[SphereRecord, Message | None]:
        """Accept (``decide`` rules on the state, the invitation's role given) or, with no
        ``decide``, decline an invitation made to ``invitee_id``. Accepting makes the member
        change (with its event and audit entry) in the transaction that uses the invitation;
        declining is audited ``invitation_declined``.

        Returns:
            The sphere (as after the change) and the ``member`` event, if any.

        Raises:
            NotFoundError: no invitation with this id made to ``invitee_id``.
            CloisonError: ``conflict`` when it was used, declined, revoked or has expired;
                whatever ``decide`` raised.
        """
        ...

    async def list_invitations(
        self,
        *,
        sphere_id: SphereId | None = None,
        invitee_id: UserId | None = None,
        now_ms: int,
        limit: int,
        after: EntryKey | None = None,
    ) -> list[Invitation]:
        """Pending, unexpired invitations of a sphere or to a user (exactly one of the two),
        oldest first (by created_ms, invitation_id), after ``after``."""
        ...

    async def request_join(
        self,
        sphere_id: SphereId,
        user_id: UserId,
        comment: str | None,
        check: CheckEntry,
        *,
        now_ms: int,
    ) -> JoinRequestInfo:
        """Ask to join, if ``check`` allows it (actor and target: the user). Audited
        ``join_requested``.

        Raises:
            NotFoundError: no such sphere.
            CloisonError: ``conflict`` if a request is pending already; whatever ``check``
                raised.
        """
        ...

    async def withdraw_request(self, sphere_id: SphereId, user_id: UserId, *, now_ms: int) -> None:
        """Withdraw the user's pending request. Audited ``request_withdrawn``.

        Raises:
            NotFoundError: no pending request of the user in the sphere.
        """
        ...

    async def list_requests(
        self, sphere_id: SphereId, *, limit: int, after: EntryKey | None = None
    ) -> list[JoinRequestInfo]:
        """Pending requests, oldest first (by created_ms, user_id), after ``after``."""
        ...

    async def answer_request(
        self,
        sphere_id: SphereId,
        actor_id: UserId,
        user_id: UserId,
        decide: DecideMember,
        *,
        accept: bool,
        now_ms: int,
    ) -> Message | None:
        """Accept or refuse ``user_id``'s pending request. ``decide`` rules first (the actor's
        right, and for an acceptance the change to make); a refusal is audited
        ``request_refused``.

        Raises:
            NotFoundError: no pending request (only after ``decide``).
            CloisonError: whatever ``decide`` raised.
        """
        ...

    async def ban(
        self,
        sphere_id: SphereId,
        actor_id: UserId,
        target_id: UserId,
        reason: str | None,
        decide: DecideMember,
        *,
        now_ms: int,
    ) -> Message | None:
        """Ban a user (member or not) as ``decide`` rules: the member change (its ``member``
        event, role None), the ban row, and the refusal of the user's pending request, in one
        transaction. None when already banned. The user's pending invitations are no longer
        listed, and refused if accepted, while the ban lasts.
        """
        ...

    async def unban(
        self,
        sphere_id: SphereId,
        actor_id: UserId,
        target_id: UserId,
        decide: DecideMember,
        *,
        now_ms: int,
    ) -> Message | None:
        """Lift a ban as ``decide`` rules (its ``member`` event says ``unbanned``)."""
        ...

    async def list_bans(
        self, sphere_id: SphereId, *, limit: int, after: EntryKey | None = None
    ) -> list[BanInfo]:
        """Bans, oldest first (by ts_ms, user_id), after ``after``."""
        ...

    async def set_muted(
        self,
        sphere_id: SphereId,
        actor_id: UserId,
        target_id: UserId,
        decide: DecideMember,
        *,
        now_ms: int,
    ) -> Message | None:
        """Mute or unmute a member as ``decide`` rules: the member's ``muted_until_ms`` is the
        change's ``until_ms`` (None: unmuted), written with its ``member`` event."""
        ...

    async def change_members(
        self,
        sphere_id: SphereId,
        actor_id: UserId,
        changes: Sequence[tuple[UserId, DecideMember]],
        *,
        now_ms: int,
    ) -> list[Message]:
        """Several member changes of one sphere in one transaction, in order, each decided on
        the state the previous ones left (a transfer of ownership: two)."""
        ...

    async def delete_sphere(
        self, sphere_id: SphereId, actor_id: UserId, check: CheckDelete, *, now_ms: int
    ) -> Message:
        """Delete the sphere and every row of it, if ``check`` allows it, in one transaction
        that records ``sphere_deleted`` in the server's audit log.

        Returns:
            The sphere's last event, never stored: a ``sphere`` event with ``deleted`` true at
            the offset after the last, which tells subscribers the sphere is gone.

        Raises:
            NotFoundError: no such sphere.
            CloisonError: whatever ``check`` raised; nothing was deleted.
        """
        ...
