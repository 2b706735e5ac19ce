"""A sphere's charter: set it (publishers and administrators), read it (whoever sees the
sphere), accept it (members). The rights are rows of the operation table; while a member has
not accepted the current version, ``server.access.authorise`` refuses their reads."""

from __future__ import annotations

from protocol import (
    AcceptCharter,
    CharterInfo,
    CloisonError,
    ErrorCode,
    Frame,
    GetCharter,
    SetCharter,
    SphereId,
)
from server import access
from server.access import Granted
from server.operations.context import Caller, Deps, Handler, granted, now_ms
from storage import Charter


class CharterHandlers:
    def __init__(self, deps: Deps) -> None:
        self._store = deps.store
        self._hub = deps.hub

    def handlers(self) -> dict[type[Frame], Handler]:
        return {
            SetCharter: self._set_charter,
            GetCharter: self._get_charter,
            AcceptCharter: self._accept_charter,
        }

    async def _charter(self, sphere_id: SphereId) -> Charter:
        charter = await self._store.get_charter(sphere_id)
        if charter is None:  # deleted since the check
            raise CloisonError(access.SPHERE_NOT_FOUND, code=ErrorCode.NOT_FOUND)
        return charter

    @staticmethod
    def _info(
        sphere_id: SphereId, charter: Charter, accepted: int | None, ref: str | None
    ) -> CharterInfo:
        return CharterInfo(
            sphere_id=sphere_id,
            version=charter.version,
            text=charter.text,
            accepted=accepted,
            ref=ref,
        )

    async def _set_charter(self, caller: Caller, frame: SetCharter, grant: Granted | None) -> Frame:
        """A new version (empty text: none); the members who have not accepted it lose their
        subscriptions once its ``sphere`` event reaches them."""
        event = await self._store.set_charter(
            frame.sphere_id, caller.user.user_id, frame.text, access.check_charter, now_ms=now_ms()
        )
        await self._hub.publish(event)
        charter = await self._charter(frame.sphere_id)
        return self._info(frame.sphere_id, charter, charter.version, frame.ref)

    async def _get_charter(self, caller: Caller, frame: GetCharter, grant: Granted | None) -> Frame:
        grant = granted(grant)
        charter = await self._charter(frame.sphere_id)
        accepted = None
        if grant.role is not None:
            _, member = await self._store.sphere_view(frame.sphere_id, caller.user.user_id)
            accepted = member.charter_accepted if member is not None else None
        return self._info(frame.sphere_id, charter, accepted, frame.ref)

    async def _accept_charter(
        self, caller: Caller, frame: AcceptCharter, grant: Granted | None
    ) -> Frame:
        await self._store.accept_charter(frame.sphere_id, caller.user.user_id, frame.version)
        charter = await self._charter(frame.sphere_id)
        return self._info(frame.sphere_id, charter, frame.version, frame.ref)
