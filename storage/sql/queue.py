"""The queue of appends awaiting their group commit, and the writer task that drains it.

Both engines commit appends in groups: ``AppendQueue.append`` queues a draft and awaits its
future; one writer task takes everything queued (at most ``MAX_BATCH_APPENDS``) and hands the
group to the engine's ``commit`` callable, which returns one outcome per draft; the futures are
resolved from those, after the group committed (or failed) only.

Backpressure is the same for both engines (``storage.base.MAX_QUEUED_APPENDS``): an append that
finds the queue full fails at once with ``StoreOverloadedError`` (``unavailable``, retryable;
nothing was queued, so nothing is written), rather than wait for room. Appends are queued in
the order their calls start (``put_nowait``, no await before it), which the server relies on
to keep each sender's pipelined writes in order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from protocol import SphereId
from storage.base import (
    MAX_QUEUED_APPENDS,
    AppendResult,
    Draft,
    StoreError,
    StoreOverloadedError,
)
from storage.commit import FailureLog
from storage.rows import Outcome, WriterStats

# Bounds the duration and memory of one transaction; far above what piles up during one commit.
MAX_BATCH_APPENDS = 1000


@dataclass(frozen=True, slots=True)
class QueuedAppend:
    sphere_id: SphereId
    draft: Draft
    future: asyncio.Future[AppendResult]


Commit = Callable[[list[QueuedAppend]], Awaitable[list[Outcome]]]


class AppendQueue:
    """The bounded queue of appends and its writer task; ``aclose()`` drains and stops it."""

    def __init__(self, commit: Commit, log: logging.Logger, *, name: str) -> None:
        """Start the writer task, which runs ``commit`` on each group, one at a time."""
        self._commit = commit
        self._queue: asyncio.Queue[QueuedAppend | None] = asyncio.Queue(MAX_QUEUED_APPENDS)
        self.closing = False  # no new appends
        self.failures = FailureLog(log)
        self._commits = 0
        self._appends = 0
        self._task = asyncio.create_task(self._run(), name=name)

    async def append(self, sphere_id: SphereId, draft: Draft) -> AppendResult:
        """Queue ``draft`` and await the outcome of its group.

        Raises:
            StoreOverloadedError: ``MAX_QUEUED_APPENDS`` appends wait already.
            StoreError: the store is closing; or what the group's commit failed with.
        """
        if self.closing:
            raise StoreError("the store is closed")
        if self._queue.full():
            raise StoreOverloadedError()
        future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        # put_nowait: queued in the order appends start, never overtaken by a later caller.
        self._queue.put_nowait(QueuedAppend(sphere_id, draft, future))
        return await future

    def committed(self, appends: int) -> None:
        """Count a group of ``appends`` that committed (for ``stats``)."""
        self.failures.succeeded()
        self._commits += 1
        self._appends += appends

    @property
    def stats(self) -> WriterStats:
        return WriterStats(
            commits=self._commits,
            appends=self._appends,
            failed_groups=self.failures.failed_groups,
            unknown_groups=self.failures.unknown_groups,
        )

    async def aclose(self) -> None:
        """Refuse new appends, commit those queued, stop the writer."""
        if self.closing:
            return
        self.closing = True
        try:
            await self._queue.put(None)  # behind every append already queued
            await self._task
        finally:
            # Only if the writer died: appends still queued.
            while not self._queue.empty():
                item = self._queue.get_nowait()
                if item is not None and not item.future.done():
                    item.future.set_exception(StoreError("the store is closed"))

    async def _run(self) -> None:
        """Commit queued appends group by group until the stop marker (``None``) comes."""
        while True:
            batch: list[QueuedAppend] = []
            item = await self._queue.get()
            while item is not None:
                batch.append(item)
                if len(batch) == MAX_BATCH_APPENDS or self._queue.empty():
                    break
                item = self._queue.get_nowait()
            if batch:
                outcomes = await self._commit(batch)
                for queued, outcome in zip(batch, outcomes, strict=True):
                    if queued.future.done():  # its appender was cancelled; the write stands
                        continue
                    if isinstance(outcome, AppendResult):
                        queued.future.set_result(outcome)
                    else:
                        queued.future.set_exception(outcome)
            if item is None:
                return
