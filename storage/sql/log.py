"""The message log's reads, shared by both engines: events after an offset, history pages,
one event, the heads of spheres. Appends are the engines' own (group commit), planned by
``storage.sql.plan``."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Self

from protocol import Message, SphereId, StreamPosition, UserId
from storage.rows import WriterStats, check_limit, to_message
from storage.sql.audit import SqlSphereAudit
from storage.sql.charter import SqlCharters
from storage.sql.conversations import SqlConversations
from storage.sql.deletion import SqlAccountDeletions
from storage.sql.direct import SqlDirect
from storage.sql.directory import SqlDirectory
from storage.sql.export import SqlExport
from storage.sql.org_governance import SqlOrgGovernance
from storage.sql.organisations import SqlOrganisations
from storage.sql.queue import AppendQueue
from storage.sql.retention import SqlRetention
from storage.sql.signin import SqlSignIns

# The highest offset any store can hold (a signed 64-bit column).
MAX_OFFSET = 2**63 - 1


class SqlStore(
    SqlOrgGovernance,
    SqlAccountDeletions,
    SqlDirect,
    SqlDirectory,
    SqlSphereAudit,
    SqlConversations,
    SqlCharters,
    SqlExport,
    SqlRetention,
    SqlOrganisations,
    SqlSignIns,
):
    """The reads of ``storage.base.MessageLog`` and all of ``Directory``, in shared SQL, and
    the lifecycle both engines share (``async with``; ``aclose`` is the engine's)."""

    _appends: AppendQueue  # the engine's queue of appends and its group writer

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def writer_stats(self) -> WriterStats:
        return self._appends.stats

    async def events_after(self, sphere_id: SphereId, after: int, limit: int) -> list[Message]:
        check_limit(limit)
        rows = await self._query(self._q.events_after, sphere_id, after, limit)
        return [to_message(row) for row in rows]

    async def history(
        self,
        sphere_id: SphereId,
        *,
        before: int | None,
        after: int | None,
        limit: int,
        floor: int = 0,
        own_member_events: UserId | None = None,
    ) -> tuple[list[Message], bool]:
        """Posts only, ascending; see ``storage.base.MessageLog.history``.

        When both bounds are given, the page is the oldest posts strictly between them.
        """
        check_limit(limit)
        q = self._q
        upper = MAX_OFFSET if before is None else before - 1
        # Offsets below the reader's floor are not there for them: the page starts at it.
        lower = max(after or 0, floor - 1)
        if own_member_events is None:
            sql = q.posts_oldest_first if after is not None else q.posts_newest_first
            rows = await self._query(sql, sphere_id, lower, upper, limit + 1)
        else:
            sql = q.own_posts_oldest_first if after is not None else q.own_posts_newest_first
            rows = await self._query(sql, sphere_id, lower, upper, own_member_events, limit + 1)
        has_more = len(rows) > limit
        posts = [to_message(row) for row in rows[:limit]]
        if after is None:
            posts.reverse()
        return await self.with_reactions(posts), has_more

    async def get_event(self, sphere_id: SphereId, offset: int) -> Message | None:
        rows = await self._query(self._q.get_event, sphere_id, offset)
        return to_message(rows[0]) if rows else None

    async def heads(self, sphere_ids: Sequence[SphereId]) -> dict[SphereId, StreamPosition]:
        rows = await self._query(self._q.heads, self._dialect.list_arg(sphere_ids))
        return {SphereId(row[0]): StreamPosition(row[1], row[2]) for row in rows}
