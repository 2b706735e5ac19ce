"""The retention job: removes expired events for real, a small batch at a time.

Every ``interval_s`` the job passes over the spheres that have a retention period (their own,
or the server's ``--retention-days``, which is also the longest a sphere may choose) and no
live legal hold. For each, it calls ``Store.expire_events`` until nothing older than the
period is left below the first event still young enough: each call is one short transaction
of at most ``batch`` events, and the job yields to the event loop between them, so the
gateway keeps serving while a large sphere is trimmed. After each batch that removed
something, ``scrub`` (the store's) makes the removed bytes leave the storage files.

Time comes from ``clock`` (ms since the epoch), so tests move it instead of waiting days.
Several gateways may run the job at once: a batch is idempotent and the horizon only moves
forward. What a pass found is kept in the store (``retention_runs``, each sphere's
``retention_run_ms``) for ``cloison retention status``; this node's last pass also feeds the
metrics (``cloison_retention_*``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import Counter

from protocol import CloisonError, ErrorCode, Message, SphereId, UserId
from server.metrics import Metrics
from storage import RetentionRun, SphereRecord, Store

logger = logging.getLogger(__name__)

# Why: a day in the store's unit.
DAY_MS = 86_400_000
# Why: one listing read of spheres per this many; the pass holds no more than that in memory.
SPHERES_PER_READ = 200
# Why: the longest pause between passes the job accepts; an hour lets expiry lag by little.
DEFAULT_INTERVAL_S = 3600.0
# Why: 500 events is one transaction of a few milliseconds on either engine: appends of the
# sphere wait at most that long for its lock, and the loop is never held longer than a yield.
DEFAULT_BATCH = 500
# Who the sphere's audit log names for what the job removed.
RETENTION_ACTOR = "retention"

Clock = Callable[[], int]
Scrub = Callable[[], Awaitable[None]]


def effective_days(own: int | None, server_days: int) -> int | None:
    """The period that applies to a sphere: its own, never longer than the server's
    (0: keep forever); None when messages are kept forever."""
    if own is None:
        return server_days or None
    return min(own, server_days) if server_days else own


class RetentionJob:
    def __init__(
        self,
        store: Store,
        *,
        server_days: int,
        node: str,
        clock: Clock,
        batch: int = DEFAULT_BATCH,
        interval_s: float = DEFAULT_INTERVAL_S,
        scrub: Scrub | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._store = store
        self._server_days = server_days
        self._node = node
        self._clock = clock
        self._batch = batch
        self._interval_s = interval_s
        self._scrub = scrub
        self._task: asyncio.Task[None] | None = None
        self.last_run: RetentionRun | None = None
        self.oldest_ms: int | None = None  # oldest post still held where a period applies
        self._deleted: Counter | None = None
        if metrics is not None:
            self._deleted = metrics.retention_deleted
            metrics.gauge(
                "cloison_retention_last_run_timestamp_seconds",
                "When this node's retention job last finished a pass (0: never)",
                lambda: self.last_run.finished_ms / 1000 if self.last_run else 0.0,
            )
            metrics.gauge(
                "cloison_retention_oldest_age_seconds",
                "Age of the oldest post still held in a sphere with a retention period, at "
                "the last pass (0: none); above the period means the job is behind",
                self._oldest_age_s,
            )

    def _oldest_age_s(self) -> float:
        if self.oldest_ms is None:
            return 0.0
        return max(0.0, (self._clock() - self.oldest_ms) / 1000)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="retention")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:  # the job's boundary: the next pass tries again
                logger.warning("retention pass failed; retrying next interval", exc_info=True)
            await asyncio.sleep(self._interval_s)

    async def run_once(self) -> RetentionRun:
        """One pass over every sphere with a period; returns what it did."""
        started_ms = self._clock()
        spheres = deleted = 0
        oldest: int | None = None
        after: SphereId | None = None
        while True:
            page = await self._store.retention_spheres(
                everyone=self._server_days > 0, after=after, limit=SPHERES_PER_READ
            )
            for sphere in page:
                days = effective_days(sphere.retention_days, self._server_days)
                if days is None:
                    continue
                spheres += 1
                deleted += await self._expire(sphere, days)
                status = await self._store.retention_status(sphere_id=sphere.sphere_id, limit=1)
                for found in status:
                    if found.oldest_ms is not None and not sphere.held(self._clock()):
                        oldest = found.oldest_ms if oldest is None else min(oldest, found.oldest_ms)
            if len(page) < SPHERES_PER_READ:
                break
            after = page[-1].sphere_id
        run = RetentionRun(self._node, started_ms, self._clock(), spheres, deleted)
        await self._store.record_retention_run(run)
        self.last_run, self.oldest_ms = run, oldest
        return run

    async def _expire(self, sphere: SphereRecord, days: int) -> int:
        """Remove the sphere's events older than ``days``, batch by batch; how many."""
        now_ms = self._clock()
        deleted = 0
        while True:
            batch = await self._store.expire_events(
                sphere.sphere_id,
                before_ms=now_ms - days * DAY_MS,
                now_ms=now_ms,
                limit=self._batch,
            )
            if batch.deleted:
                deleted += batch.deleted
                if self._deleted is not None:
                    self._deleted.inc(batch.deleted)
                if self._scrub is not None:
                    await self._scrub()
            if not batch.more:
                break
            await asyncio.sleep(0)  # let the gateway serve between two transactions
        await self._store.finish_retention(
            sphere.sphere_id, now_ms=now_ms, deleted=deleted, actor_id=RETENTION_ACTOR
        )
        if deleted:
            logger.info(
                "retention removed %d events (now from offset %d)",
                deleted,
                batch.retained_from,
                extra={"sphere_id": sphere.sphere_id},
            )
        return deleted


# Why: a reason names a proceeding or a ticket, not a brief.
MAX_HOLD_REASON_CHARS = 500


async def set_hold(
    store: Store,
    sphere_id: SphereId,
    actor_id: UserId,
    *,
    until_ms: int | None,
    reason: str,
    now_ms: int,
) -> tuple[SphereRecord, Message]:
    """Set a legal hold (a server administrator's act; the caller checked who they are).

    Raises:
        CloisonError: ``bad_frame`` for an end in the past or a missing or long reason,
            ``not_found`` for an unknown sphere.
    """
    reason = reason.strip()
    if not reason or len(reason) > MAX_HOLD_REASON_CHARS:
        raise CloisonError(
            f"reason: give one, of at most {MAX_HOLD_REASON_CHARS} characters",
            code=ErrorCode.BAD_FRAME,
        )
    if until_ms is not None and until_ms <= now_ms:
        raise CloisonError("until: the hold must end in the future", code=ErrorCode.BAD_FRAME)
    return await store.set_legal_hold(
        sphere_id, actor_id, until_ms=until_ms, reason=reason, now_ms=now_ms
    )
