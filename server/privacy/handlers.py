"""The handler of ``export_sphere`` (a row of the operation table).

The dispatcher checks the ``export`` right (owner and administrators); the handler reads the
caller's view of the sphere in one read and answers what the archive holds (``export_info``):
its events from the caller's own floor of the history promise (never more than they may read)
up to the head, its members and its audit log. Over HTTP the route streams that archive
(``server.privacy.sphere_export``), planned from the same answer; a WebSocket gets the
answer only.
"""

from __future__ import annotations

from protocol import CloisonError, ErrorCode, ExportInfo, ExportSphere, Frame
from server.access import CHARTER_REQUIRED, SPHERE_NOT_FOUND, Granted, history_floor
from server.operations.context import Caller, Deps, Handler
from server.privacy.sphere_export import SpherePlan
from server.privacy.streaming import count_lines


class SphereExportHandlers:
    def __init__(self, deps: Deps) -> None:
        self._store = deps.store

    def handlers(self) -> dict[type[Frame], Handler]:
        return {ExportSphere: self._info}

    async def _info(self, caller: Caller, frame: ExportSphere, grant: Granted | None) -> Frame:
        sphere_id, user_id = frame.sphere_id, caller.user.user_id
        sphere, member = await self._store.sphere_view(sphere_id, user_id)
        if sphere is None:  # deleted since the rights check
            raise CloisonError(SPHERE_NOT_FOUND, code=ErrorCode.NOT_FOUND)
        if member is not None and member.charter_accepted < sphere.charter_version:
            raise CloisonError(CHARTER_REQUIRED, code=ErrorCode.CHARTER_REQUIRED)
        floor = history_floor(sphere, member)
        plan = SpherePlan(self._store, sphere, floor)
        return ExportInfo(
            sphere_id=sphere_id,
            floor=floor,
            until=sphere.offset,
            events=await self._store.count_history(sphere_id, floor=floor, until=sphere.offset),
            members=await count_lines(plan.members()),
            audit_entries=await count_lines(plan.audit()),
            # As a history page from the floor says it: explicit, never a silent start.
            truncated_before=(
                sphere.retained_from if sphere.retained_from > max(floor, 1) else None
            ),
            ref=frame.ref,
        )
