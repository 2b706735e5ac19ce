"""Reports of posts to a sphere's administrators (the rights are checked by the dispatcher).

A member reports a post they may read (live, at or above their floor) once: a second report of
the same post answers ``ok`` again and changes nothing. Each report writes a ``post_reported``
entry of the audit log, with the reason as its detail, never the post's body.
"""

from __future__ import annotations

from protocol import Frame, ListReports, Ok, Report, ReportInfo, ReportList
from server.access import Granted
from server.operations.context import Caller, Deps, Handler, now_ms
from storage import ReportRecord

# Why: an administrator reads the latest reports first; more is a page away.
DEFAULT_REPORT_LIMIT = 50


def report_info(report: ReportRecord) -> ReportInfo:
    return ReportInfo(
        report_id=report.report_id,
        target=report.target,
        reporter_id=report.reporter_id,
        reason=report.reason,
        ts_ms=report.ts_ms,
        comment=report.comment,
    )


class ReportHandlers:
    def __init__(self, deps: Deps) -> None:
        self._store = deps.store

    def handlers(self) -> dict[type[Frame], Handler]:
        return {Report: self._report, ListReports: self._list_reports}

    async def _report(self, caller: Caller, frame: Report, grant: Granted | None) -> Frame:
        await self._store.add_report(
            frame.sphere_id,
            frame.target,
            caller.user.user_id,
            frame.reason,
            frame.comment,
            now_ms=now_ms(),
        )
        return Ok(ref=frame.ref)

    async def _list_reports(
        self, caller: Caller, frame: ListReports, grant: Granted | None
    ) -> Frame:
        limit = frame.limit or DEFAULT_REPORT_LIMIT
        reports = await self._store.list_reports(
            frame.sphere_id, before=frame.before, limit=limit + 1
        )
        return ReportList(
            sphere_id=frame.sphere_id,
            reports=[report_info(r) for r in reports[:limit]],
            has_more=len(reports) > limit,
            ref=frame.ref,
        )
