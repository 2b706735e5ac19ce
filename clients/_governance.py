"""Client's governance layer: invitations, join requests, moderation, charters, the audit log,
reports, and the conversation writes and reads (replies, reactions, pins, threads, mentions).

Every method sends one frame of ``protocol.governance`` or ``protocol.conversations`` and
raises ``RequestError`` (the subclass for its code: ``NotFoundError``, ``ForbiddenError``,
``ConflictError``, ``CharterRequiredError``...) when the server refuses. Reactions, pins and
replies are stream writes: they go through the same outbox as ``publish``, resent with the
same ``message_id`` until acknowledged. Acts that a resend could repeat or turn into a
refusal (invitations and their answers, join requests, bans, mutes, transfer, deletion, the
charter's text, reports) are sent once: a lost connection raises ``ConnectionLostError`` (it
may or may not have taken effect), as for ``leave``. Reads, ``accept_charter`` and settings
are resent after a lost connection.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TypeVar

from clients._connection import ConnectionLayer
from protocol import (
    AcceptCharter,
    AcceptInvitation,
    Ack,
    AnswerRequest,
    AuditList,
    Ban,
    BanInfo,
    BanList,
    CharterInfo,
    ClientFrame,
    DeclineInvitation,
    DeleteSphere,
    Frame,
    GetCharter,
    GetThread,
    HistoryPage,
    Invitation,
    InvitationInfo,
    InvitationList,
    Invite,
    JoinRequestInfo,
    JoinRequestList,
    ListAudit,
    ListBans,
    ListInvitations,
    ListMentions,
    ListPins,
    ListReports,
    ListRequests,
    ListThreads,
    MentionList,
    Message,
    MessageId,
    Mute,
    Pin,
    Publish,
    React,
    Report,
    ReportList,
    ReportReason,
    RequestJoin,
    RevokeInvitation,
    Role,
    SetCharter,
    SphereId,
    SphereInfo,
    SphereSummary,
    ThreadList,
    ThreadPage,
    TransferOwnership,
    Unban,
    Unmute,
    Unpin,
    Unreact,
    UserId,
    WithdrawRequest,
)

P = TypeVar("P", InvitationList, JoinRequestList, BanList)
T = TypeVar("T")


def _key(message_id: str | None) -> MessageId:
    return MessageId(message_id or uuid.uuid4().hex)


class GovernanceLayer(ConnectionLayer):
    """Sphere governance and conversations on top of the connection."""

    async def _act(self, make: Callable[[str], ClientFrame], *, retry: bool = True) -> None:
        """Send a request whose success carries nothing the caller needs (``ok``)."""
        await self._request(make, Frame, retry=retry)

    async def _pages(
        self,
        make: Callable[[str | None, str], ClientFrame],
        reply_type: type[P],
        items_of: Callable[[P], list[T]],
    ) -> list[T]:
        """Every item of a list answered page by page (``next`` passed back as ``after``)."""
        items: list[T] = []
        after: str | None = None
        while True:

            def page(ref: str, after: str | None = after) -> ClientFrame:
                return make(after, ref)

            reply = await self._request(page, reply_type)
            items += items_of(reply)
            if reply.next is None:
                return items
            after = reply.next

    # -- invitations ----------------------------------------------------------------------

    async def invite(
        self,
        sphere_id: SphereId | str,
        user_id: UserId | str,
        role: Role = Role.MEMBER,
        *,
        expires_in_s: int | None = None,
    ) -> Invitation:
        """Invite a user with ``role`` (no higher than yours); it expires after
        ``expires_in_s`` (the server's default: a week). Returns the pending invitation."""
        sid, uid = SphereId(sphere_id), UserId(user_id)
        reply = await self._request(
            lambda ref: Invite(
                sphere_id=sid, user_id=uid, role=role, expires_in_s=expires_in_s, ref=ref
            ),
            InvitationInfo,
            retry=False,
        )
        return reply.invitation

    async def invitations(self, sphere_id: SphereId | str | None = None) -> list[Invitation]:
        """Pending invitations: made to you (no ``sphere_id``) or a sphere's (administrators)."""
        sid = SphereId(sphere_id) if sphere_id is not None else None
        return await self._pages(
            lambda after, ref: ListInvitations(sphere_id=sid, after=after, ref=ref),
            InvitationList,
            lambda page: page.invitations,
        )

    async def accept_invitation(self, invitation_id: str) -> SphereSummary:
        """Enter the invitation's sphere with its role (``subscribe`` to follow it)."""
        reply = await self._request(
            lambda ref: AcceptInvitation(invitation_id=invitation_id, ref=ref),
            SphereInfo,
            retry=False,
        )
        return reply.sphere

    async def decline_invitation(self, invitation_id: str) -> None:
        await self._act(
            lambda ref: DeclineInvitation(invitation_id=invitation_id, ref=ref), retry=False
        )

    async def revoke_invitation(self, invitation_id: str) -> None:
        """Revoke an invitation you made (or any of a sphere you administer)."""
        await self._act(
            lambda ref: RevokeInvitation(invitation_id=invitation_id, ref=ref), retry=False
        )

    # -- join requests --------------------------------------------------------------------

    async def request_join(self, sphere_id: SphereId | str, comment: str | None = None) -> None:
        """Ask to enter a sphere whose join policy is ``approval``."""
        sid = SphereId(sphere_id)
        await self._act(
            lambda ref: RequestJoin(sphere_id=sid, comment=comment, ref=ref), retry=False
        )

    async def withdraw_request(self, sphere_id: SphereId | str) -> None:
        sid = SphereId(sphere_id)
        await self._act(lambda ref: WithdrawRequest(sphere_id=sid, ref=ref), retry=False)

    async def join_requests(self, sphere_id: SphereId | str) -> list[JoinRequestInfo]:
        """The sphere's pending join requests (administrators)."""
        sid = SphereId(sphere_id)
        return await self._pages(
            lambda after, ref: ListRequests(sphere_id=sid, after=after, ref=ref),
            JoinRequestList,
            lambda page: page.requests,
        )

    async def answer_request(
        self, sphere_id: SphereId | str, user_id: UserId | str, *, accept: bool
    ) -> None:
        """Admit the user (``accept``) or refuse their request. Sent once."""
        sid, uid = SphereId(sphere_id), UserId(user_id)
        await self._act(
            lambda ref: AnswerRequest(sphere_id=sid, user_id=uid, accept=accept, ref=ref),
            retry=False,
        )

    # -- moderation -----------------------------------------------------------------------

    async def ban(
        self, sphere_id: SphereId | str, user_id: UserId | str, reason: str | None = None
    ) -> None:
        """Remove the user and keep them out (no rejoin, invitation or request) until unbanned."""
        sid, uid = SphereId(sphere_id), UserId(user_id)
        await self._act(
            lambda ref: Ban(sphere_id=sid, user_id=uid, reason=reason, ref=ref), retry=False
        )

    async def unban(self, sphere_id: SphereId | str, user_id: UserId | str) -> None:
        sid, uid = SphereId(sphere_id), UserId(user_id)
        await self._act(lambda ref: Unban(sphere_id=sid, user_id=uid, ref=ref), retry=False)

    async def bans(self, sphere_id: SphereId | str) -> list[BanInfo]:
        sid = SphereId(sphere_id)
        return await self._pages(
            lambda after, ref: ListBans(sphere_id=sid, after=after, ref=ref),
            BanList,
            lambda page: page.bans,
        )

    async def mute(self, sphere_id: SphereId | str, user_id: UserId | str, duration_s: int) -> None:
        """The member reads but may not write for ``duration_s`` seconds (60 s to a year)."""
        sid, uid = SphereId(sphere_id), UserId(user_id)
        await self._act(
            lambda ref: Mute(sphere_id=sid, user_id=uid, duration_s=duration_s, ref=ref),
            retry=False,
        )

    async def unmute(self, sphere_id: SphereId | str, user_id: UserId | str) -> None:
        sid, uid = SphereId(sphere_id), UserId(user_id)
        await self._act(lambda ref: Unmute(sphere_id=sid, user_id=uid, ref=ref), retry=False)

    async def transfer_ownership(self, sphere_id: SphereId | str, user_id: UserId | str) -> None:
        """Make a member the owner; you become an administrator. Sent once."""
        sid, uid = SphereId(sphere_id), UserId(user_id)
        await self._act(
            lambda ref: TransferOwnership(sphere_id=sid, user_id=uid, ref=ref), retry=False
        )

    async def delete_sphere(self, sphere_id: SphereId | str) -> None:
        """Delete the sphere and all its data (the owner only). Sent once."""
        sid = SphereId(sphere_id)
        await self._act(lambda ref: DeleteSphere(sphere_id=sid, ref=ref), retry=False)
        self._cursors.pop(sid, None)

    async def report(
        self,
        sphere_id: SphereId | str,
        target: int,
        reason: ReportReason = ReportReason.OTHER,
        comment: str | None = None,
    ) -> None:
        """Report the post at offset ``target`` to the sphere's administrators. Sent once."""
        sid = SphereId(sphere_id)
        await self._act(
            lambda ref: Report(
                sphere_id=sid, target=target, reason=reason, comment=comment, ref=ref
            ),
            retry=False,
        )

    async def reports(
        self, sphere_id: SphereId | str, *, before: int | None = None, limit: int | None = None
    ) -> ReportList:
        """One page of the sphere's reports, newest first (``before``: a ``report_id``)."""
        sid = SphereId(sphere_id)
        return await self._request(
            lambda ref: ListReports(sphere_id=sid, before=before, limit=limit, ref=ref),
            ReportList,
        )

    async def audit(
        self, sphere_id: SphereId | str, *, before: int | None = None, limit: int | None = None
    ) -> AuditList:
        """One page of the sphere's audit log, newest first (``before``: an entry's ``seq``)."""
        sid = SphereId(sphere_id)
        return await self._request(
            lambda ref: ListAudit(sphere_id=sid, before=before, limit=limit, ref=ref), AuditList
        )

    # -- charter --------------------------------------------------------------------------

    async def set_charter(self, sphere_id: SphereId | str, text: str) -> CharterInfo:
        """Set the charter members must accept before reading (its new version, accepted by
        you); empty ``text`` removes it. Members who have not accepted the new version stop
        receiving the sphere (``Unsubscribed`` with reason ``charter``) until they do."""
        sid = SphereId(sphere_id)
        return await self._request(
            lambda ref: SetCharter(sphere_id=sid, text=text, ref=ref), CharterInfo, retry=False
        )

    async def charter(self, sphere_id: SphereId | str) -> CharterInfo:
        """The charter's text and version (0: none) and the version you accepted."""
        sid = SphereId(sphere_id)
        return await self._request(lambda ref: GetCharter(sphere_id=sid, ref=ref), CharterInfo)

    async def accept_charter(self, sphere_id: SphereId | str, version: int) -> None:
        """Accept the charter's ``version`` (read with ``charter``); then ``subscribe``."""
        sid = SphereId(sphere_id)
        await self._act(lambda ref: AcceptCharter(sphere_id=sid, version=version, ref=ref))

    # -- conversations: writes ------------------------------------------------------------

    async def reply(
        self,
        sphere_id: SphereId | str,
        reply_to: int,
        body: str,
        *,
        message_id: str | None = None,
    ) -> Ack:
        """Post ``body`` as a reply to the post at offset ``reply_to``; resent like
        ``publish`` (same ``message_id``) until acknowledged."""
        sid, mid = SphereId(sphere_id), _key(message_id)
        return await self._write(
            lambda ref: Publish(
                sphere_id=sid, message_id=mid, body=body, reply_to=reply_to, ref=ref
            )
        )

    async def react(
        self, sphere_id: SphereId | str, target: int, emoji: str, *, message_id: str | None = None
    ) -> Ack:
        """React to the post at ``target`` with ``emoji``; resent like ``publish``."""
        sid, mid = SphereId(sphere_id), _key(message_id)
        return await self._write(
            lambda ref: React(sphere_id=sid, message_id=mid, target=target, emoji=emoji, ref=ref)
        )

    async def unreact(
        self, sphere_id: SphereId | str, target: int, emoji: str, *, message_id: str | None = None
    ) -> Ack:
        """Withdraw your ``emoji`` reaction to the post at ``target``; resent like ``publish``."""
        sid, mid = SphereId(sphere_id), _key(message_id)
        return await self._write(
            lambda ref: Unreact(sphere_id=sid, message_id=mid, target=target, emoji=emoji, ref=ref)
        )

    async def pin(
        self, sphere_id: SphereId | str, target: int, *, message_id: str | None = None
    ) -> Ack:
        """Pin the post at ``target`` (publishers and administrators); resent like ``publish``."""
        sid, mid = SphereId(sphere_id), _key(message_id)
        return await self._write(
            lambda ref: Pin(sphere_id=sid, message_id=mid, target=target, ref=ref)
        )

    async def unpin(
        self, sphere_id: SphereId | str, target: int, *, message_id: str | None = None
    ) -> Ack:
        sid, mid = SphereId(sphere_id), _key(message_id)
        return await self._write(
            lambda ref: Unpin(sphere_id=sid, message_id=mid, target=target, ref=ref)
        )

    # -- conversations: reads -------------------------------------------------------------

    async def pins(self, sphere_id: SphereId | str) -> list[Message]:
        """The sphere's pinned posts, oldest first."""
        sid = SphereId(sphere_id)
        page = await self._request(lambda ref: ListPins(sphere_id=sid, ref=ref), HistoryPage)
        return page.messages

    async def thread(
        self,
        sphere_id: SphereId | str,
        root: int,
        *,
        after: int | None = None,
        limit: int | None = None,
    ) -> ThreadPage:
        """The post at ``root`` and a page of its replies in stream order (those after
        ``after``; ``has_more``: pass the last reply's offset as ``after`` for the next)."""
        sid = SphereId(sphere_id)
        return await self._request(
            lambda ref: GetThread(sphere_id=sid, root=root, after=after, limit=limit, ref=ref),
            ThreadPage,
        )

    async def threads(
        self, sphere_id: SphereId | str, *, limit: int | None = None, after: str | None = None
    ) -> ThreadList:
        """One page of the sphere's posts with replies, the most recently answered first."""
        sid = SphereId(sphere_id)
        return await self._request(
            lambda ref: ListThreads(sphere_id=sid, limit=limit, after=after, ref=ref), ThreadList
        )

    async def mentions(self, *, limit: int | None = None, after: str | None = None) -> MentionList:
        """One page of the posts that mention you, across your spheres, newest first."""
        return await self._request(
            lambda ref: ListMentions(limit=limit, after=after, ref=ref), MentionList
        )
