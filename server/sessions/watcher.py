"""Polls the store's ``session_changes`` log and ends the sessions each change names.

The log is written in the transaction of each revocation and disabling, by whichever process
made it (a node serving the HTTP API, the ``cloison`` command), so polling it is how a change
reaches every node without a broker. One indexed range read per poll; when idle it returns no
row. A live socket is therefore closed within ``poll_interval_s`` plus one read of the change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from protocol import OrgId
from server.sessions.registry import SessionRegistry
from storage import ChangeKind, Store, StoreError

logger = logging.getLogger(__name__)

# Why: bounds one read; a burst larger than this is read in several pages, without a pause.
CHANGES_PER_READ = 1000
# Why: a store outage should be logged, not once per poll.
ERROR_LOG_INTERVAL_S = 30.0


class SessionWatcher:
    def __init__(
        self,
        store: Store,
        registry: SessionRegistry,
        *,
        poll_interval_s: float,
        end_org: Callable[[OrgId], object] | None = None,
    ) -> None:
        """``end_org`` ends this node's subscriptions to a suspended organisation's spheres."""
        self._store = store
        self._end_org = end_org
        self._registry = registry
        self._interval_s = poll_interval_s
        self._cursor = 0
        self._task: asyncio.Task[None] | None = None
        self.applied = 0  # changes read since start
        self.ended = 0  # sessions they ended on this node

    async def start(self) -> None:
        """Start after the newest change: older ones were committed before any session here
        read its token, so those reads saw them.

        Raises:
            StoreError: the store cannot be read.
        """
        self._cursor = await self._store.latest_session_change()
        self._task = asyncio.create_task(self._run(), name="session watcher")

    async def poll(self) -> int:
        """Apply every change committed since the last poll; returns how many there were."""
        count = 0
        while True:
            changes = await self._store.session_changes_after(self._cursor, CHANGES_PER_READ)
            for change in changes:
                self.ended += self._registry.apply(change)
                suspended = change.kind is ChangeKind.ORG_SUSPENDED and not change.user_id
                if suspended and self._end_org is not None and change.org_id is not None:
                    self._end_org(change.org_id)
                self._cursor = change.seq
            count += len(changes)
            if len(changes) < CHANGES_PER_READ:
                break
        self.applied += count
        return count

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        logged_at = -ERROR_LOG_INTERVAL_S
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.poll()
            except StoreError as exc:
                # Retried at the next poll; sessions stay open meanwhile (reported as a bound).
                # The class and message say enough; a traceback per outage would only add noise.
                if loop.time() - logged_at >= ERROR_LOG_INTERVAL_S:
                    logged_at = loop.time()
                    logger.warning(
                        "cannot read session changes (%s: %s); retrying", type(exc).__name__, exc
                    )

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
