"""Private messages: ``open_direct`` opens a direct conversation (``docs/protocol.md``).

Everything else in a conversation is done with the frames of any sphere, under the rights
table's ``direct`` column: its participants post, reply, react, edit and delete their own
posts, pin, read and leave; nobody invites, moderates, exports or administers it, so nobody
but its participants ever reads a byte of it. This module only checks the request's shape and
names the context; who may be in the conversation is decided by the store on the rows of the
transaction that opens it (``storage.direct``).
"""

from __future__ import annotations

from protocol import (
    MAX_DIRECT_PARTICIPANTS,
    CloisonError,
    ErrorCode,
    Frame,
    OpenDirect,
    OrgId,
    ProtocolViolation,
    SphereInfo,
    UserId,
)
from server.access import Granted
from server.operations.context import Caller, Deps, Handler, now_ms
from server.operations.spheres import SphereHandlers
from storage import ORG_NOT_FOUND


def others_of(caller: UserId, user_ids: list[UserId]) -> list[UserId]:
    """The other participants, in the order given, each once (the caller may name themselves).

    Raises:
        ProtocolViolation: nobody but the caller, or too many.
    """
    others = list(dict.fromkeys(u for u in user_ids if u != caller))
    if not others:
        raise ProtocolViolation("user_ids: name at least one other participant")
    if len(others) + 1 > MAX_DIRECT_PARTICIPANTS:
        raise ProtocolViolation(
            f"user_ids: a conversation has at most {MAX_DIRECT_PARTICIPANTS} participants, "
            "you included"
        )
    return others


class DirectHandlers:
    def __init__(self, deps: Deps, spheres: SphereHandlers) -> None:
        self._store = deps.store
        self._spheres = spheres

    def handlers(self) -> dict[type[Frame], Handler]:
        return {OpenDirect: self._open_direct}

    async def _open_direct(self, caller: Caller, frame: OpenDirect, grant: Granted | None) -> Frame:
        user_id = caller.user.user_id
        others = others_of(user_id, frame.user_ids)
        if frame.org_id is not None and frame.context_sphere_id is not None:
            raise ProtocolViolation("org_id, context_sphere_id: name one context, not both")
        org_id = frame.org_id
        if org_id is None and frame.context_sphere_id is None:
            org_id = await self._only_org(user_id)
        opening = await self._store.open_direct(
            user_id,
            others,
            org_id=org_id,
            context_sphere_id=frame.context_sphere_id,
            name=frame.name or "",
            now_ms=now_ms(),
        )
        # Nobody subscribes to a sphere before it exists: its member events reach each
        # participant's first subscribe or history, like any sphere's.
        return SphereInfo(sphere=await self._spheres.summary(opening.sphere, caller), ref=frame.ref)

    async def _only_org(self, user_id: UserId) -> OrgId:
        """The caller's organisation, when they belong to exactly one."""
        orgs = await self._store.user_orgs(user_id)
        if not orgs:
            raise CloisonError(ORG_NOT_FOUND, code=ErrorCode.NOT_FOUND)
        if len(orgs) > 1:
            raise ProtocolViolation("org_id: you belong to several organisations; name one")
        return orgs[0].org.org_id
