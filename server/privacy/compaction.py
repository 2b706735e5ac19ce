"""The scheduled compaction: erased content leaves PostgreSQL's relation files within an interval.

``Compactor`` runs ``store.compact()`` every ``pg_compact_interval_h`` hours (the first run one
interval after the start, so that restarts do not stall writes), each table's rewrite bounded
to ``SCHEDULED_STALL_S``. Nodes that share a database
each run it; the store's advisory lock lets one compact at a time and the others skip. A
failed run is logged and retried at the next interval; ``cloison privacy compact`` runs one
at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from protocol import CloisonError
from storage import CompactionReport, CompactionRunningError, Store

logger = logging.getLogger(__name__)

# How long a scheduled compaction may hold writes up on one table: below the appends'
# statement timeout (5 s), so that a table too large to rewrite in time is skipped, with a
# warning, instead of failing writes. The command line has no bound (the operator's choice).
SCHEDULED_STALL_S = 2.0


class Compactor:
    """The compaction schedule of one node; ``interval_s`` 0 turns it off."""

    def __init__(self, store: Store, interval_s: float) -> None:
        self._store = store
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._interval_s > 0:
            self._task = asyncio.create_task(self._run(), name="compaction")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await compact_once(self._store, max_stall_s=SCHEDULED_STALL_S)


async def compact_once(store: Store, *, max_stall_s: float | None) -> CompactionReport | None:
    """One compaction, logged; None if it failed."""
    try:
        report = await store.compact(max_stall_s=max_stall_s)
    except CompactionRunningError:  # another node's turn: the schedule's normal case
        logger.info("compaction skipped: another process is compacting the store")
        return None
    except CloisonError as exc:
        logger.warning("compaction not done: %s", exc.message)
        return None
    skipped = [f"{t.table} ({t.skipped})" for t in report.tables if t.skipped]
    logger.info("compacted %d tables in %.2f s", len(report.tables) - len(skipped), report.seconds)
    if skipped:
        logger.warning(
            "compaction skipped %s: erased content stays in their files; run "
            "'cloison privacy compact' at a quiet hour",
            ", ".join(skipped),
        )
    return report
