"""Entering a sphere: invitations and join requests.

An invitation is made to an existing user, with a role no higher than the inviter's
(``server.governance.decisions``), and used once: accepted or declined by its invitee alone,
revoked by its inviter or an administrator, or left to expire. Its id is a random secret; an
id that is unknown, altered or another's is answered ``not_found`` alike. A join request asks
an administrator to admit the user into a sphere whose join policy is ``approval``.

The rights these requests need in their sphere are rows of the operation table (checked by
the dispatcher); the requests that name no sphere (answering, revoking or listing one's own
invitations) are checked here, on the invitation's rows, by the store's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar, cast

from protocol import (
    DEFAULT_INVITATION_S,
    AcceptInvitation,
    AnswerRequest,
    DeclineInvitation,
    Frame,
    Invitation,
    InvitationInfo,
    InvitationList,
    Invite,
    JoinRequestInfo,
    JoinRequestList,
    ListInvitations,
    ListRequests,
    Ok,
    RequestJoin,
    RevokeInvitation,
    SphereInfo,
    WithdrawRequest,
)
from server import paging
from server.access import Granted
from server.governance import decisions
from server.operations.context import Caller, Deps, Handler, now_ms
from server.operations.spheres import SphereHandlers
from storage import EntryKey

T = TypeVar("T")

# The shape of the cursors of invitations, requests and bans: (time in ms, id).
ENTRY_CURSOR = (int, str)
# Why: an administrator reviews this many at once; more is a page away.
DEFAULT_ENTRY_LIMIT = 50


def read_after(after: str | None) -> EntryKey | None:
    """The key a list's ``after`` cursor holds (``bad_frame`` if it is not one of ours)."""
    return cast("EntryKey", paging.read_cursor(after, ENTRY_CURSOR)) if after else None


def fit_page(
    deps: Deps,
    caller: Caller,
    page: Sequence[T],
    limit: int,
    frame: Callable[[list[T]], Frame],
    key: Callable[[T], EntryKey],
) -> tuple[list[T], str | None]:
    """The items of ``page`` (read with ``limit + 1``) that fit a reply, and its ``next``."""
    codec = deps.codec(caller)
    return paging.fit_listing(
        page,
        limit,
        budget=deps.page_bytes,
        size=lambda item: paging.encoded_size(codec, frame([item])),
        key=key,
    )


def _invitation_key(invitation: Invitation) -> EntryKey:
    return (invitation.created_ms, invitation.invitation_id)


def _request_key(request: JoinRequestInfo) -> EntryKey:
    return (request.created_ms, request.user_id)


class EntryHandlers:
    def __init__(self, deps: Deps, spheres: SphereHandlers) -> None:
        self._deps = deps
        self._store = deps.store
        self._hub = deps.hub
        self._spheres = spheres

    def handlers(self) -> dict[type[Frame], Handler]:
        return {
            Invite: self._invite,
            RevokeInvitation: self._revoke,
            AcceptInvitation: self._accept,
            DeclineInvitation: self._decline,
            ListInvitations: self._list_invitations,
            RequestJoin: self._request_join,
            WithdrawRequest: self._withdraw,
            ListRequests: self._list_requests,
            AnswerRequest: self._answer_request,
        }

    # -- invitations ---------------------------------------------------------------------------

    async def _invite(self, caller: Caller, frame: Invite, grant: Granted | None) -> Frame:
        now = now_ms()
        lifetime_s = frame.expires_in_s or DEFAULT_INVITATION_S
        invitation = await self._store.invite(
            frame.sphere_id,
            caller.user.user_id,
            frame.user_id,
            frame.role,
            decisions.deciding_invite(frame.role),
            expires_ms=now + lifetime_s * 1000,
            now_ms=now,
        )
        return InvitationInfo(invitation=invitation, ref=frame.ref)

    async def _revoke(
        self, caller: Caller, frame: RevokeInvitation, grant: Granted | None
    ) -> Frame:
        user_id = caller.user.user_id
        await self._store.revoke_invitation(
            frame.invitation_id, user_id, decisions.checking_revoke(user_id), now_ms=now_ms()
        )
        return Ok(ref=frame.ref)

    async def _accept(
        self, caller: Caller, frame: AcceptInvitation, grant: Granted | None
    ) -> Frame:
        sphere, event = await self._store.answer_invitation(
            frame.invitation_id, caller.user.user_id, decisions.decide_accept, now_ms=now_ms()
        )
        if event is not None:
            await self._hub.publish(event)
        return SphereInfo(sphere=await self._spheres.summary(sphere, caller), ref=frame.ref)

    async def _decline(
        self, caller: Caller, frame: DeclineInvitation, grant: Granted | None
    ) -> Frame:
        await self._store.answer_invitation(
            frame.invitation_id, caller.user.user_id, None, now_ms=now_ms()
        )
        return Ok(ref=frame.ref)

    async def _list_invitations(
        self, caller: Caller, frame: ListInvitations, grant: Granted | None
    ) -> Frame:
        """The sphere's pending invitations (its administrators: the dispatcher checked the
        right), or without ``sphere_id`` the caller's own."""
        limit = frame.limit or DEFAULT_ENTRY_LIMIT
        own = frame.sphere_id is None
        page = await self._store.list_invitations(
            sphere_id=frame.sphere_id,
            invitee_id=caller.user.user_id if own else None,
            now_ms=now_ms(),
            limit=limit + 1,
            after=read_after(frame.after),
        )
        invitations, cursor = fit_page(
            self._deps,
            caller,
            page,
            limit,
            lambda items: InvitationList(invitations=items),
            _invitation_key,
        )
        return InvitationList(invitations=invitations, next=cursor, ref=frame.ref)

    # -- join requests -------------------------------------------------------------------------

    async def _request_join(
        self, caller: Caller, frame: RequestJoin, grant: Granted | None
    ) -> Frame:
        await self._store.request_join(
            frame.sphere_id,
            caller.user.user_id,
            frame.comment,
            decisions.check_request,
            now_ms=now_ms(),
        )
        return Ok(ref=frame.ref)

    async def _withdraw(
        self, caller: Caller, frame: WithdrawRequest, grant: Granted | None
    ) -> Frame:
        await self._store.withdraw_request(frame.sphere_id, caller.user.user_id, now_ms=now_ms())
        return Ok(ref=frame.ref)

    async def _list_requests(
        self, caller: Caller, frame: ListRequests, grant: Granted | None
    ) -> Frame:
        limit = frame.limit or DEFAULT_ENTRY_LIMIT
        page = await self._store.list_requests(
            frame.sphere_id, limit=limit + 1, after=read_after(frame.after)
        )
        requests, cursor = fit_page(
            self._deps,
            caller,
            page,
            limit,
            lambda items: JoinRequestList(sphere_id=frame.sphere_id, requests=items),
            _request_key,
        )
        return JoinRequestList(
            sphere_id=frame.sphere_id, requests=requests, next=cursor, ref=frame.ref
        )

    async def _answer_request(
        self, caller: Caller, frame: AnswerRequest, grant: Granted | None
    ) -> Frame:
        event = await self._store.answer_request(
            frame.sphere_id,
            caller.user.user_id,
            frame.user_id,
            decisions.deciding_answer(frame.accept),
            accept=frame.accept,
            now_ms=now_ms(),
        )
        if event is not None:
            await self._hub.publish(event)
        return Ok(ref=frame.ref)
