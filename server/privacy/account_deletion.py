"""Account deletion: the request, and the job that carries it out (docs/privacy.md).

Theory of operation
-------------------
A request is synchronous and one transaction of the store
(``Store.request_account_deletion``): the job's row, the account disabled, every token revoked
with its session change, the audit entry. This node closes the account's sockets at once;
every other node does on its next poll of the session changes. The answer (202) is the job.

The job runs in the background of every gateway (``DeletionRunner``), in small steps that
each commit on their own and find their work in the rows (``storage.deletion``): a crash at
any point, ``kill -9`` included, leaves a job that the next run resumes where it stopped,
without doing anything twice. Every gateway looks for unfinished jobs when it starts, when it
accepts a request, and every half lease; a lease on the job's row (renewed at every batch)
keeps two gateways from running one job at once, and lets another take over once the holder
stopped renewing it.

A sphere under a legal hold keeps what the account wrote there until the hold is lifted: the
job does everything else, is ``held``, and looks again at every poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from protocol import (
    CloisonError,
    ErrorCode,
    EventKind,
    Message,
    ProtocolViolation,
    SphereId,
    UserId,
)
from server.config import Config
from server.operations import now_ms
from server.sessions.accounts import Actor
from server.sessions.registry import DISABLED, SessionRegistry
from storage import (
    ACCOUNT_DELETED,
    AuditEntry,
    DeletionJob,
    DeletionMode,
    DeletionState,
    SphereStep,
    Store,
    StoreError,
)

logger = logging.getLogger(__name__)

# Why: one transaction looks at this many spheres for the account's rows (a few index probes
# each), short enough not to hold up the writer.
SCAN_PAGE = 500
# Why: spheres of a job are read in pages; an account may belong to many.
SPHERE_PAGE = 100
# Why: jobs started per look; the others wait for the next one.
JOBS_PER_LOOK = 100

Publish = Callable[[Message], Awaitable[None]]


class AccountDeletion:
    """The one code path of a deletion request, for HTTP and the command line alike."""

    def __init__(
        self,
        store: Store,
        config: Config,
        registry: SessionRegistry | None = None,
        *,
        wake: Callable[[], None] | None = None,
    ) -> None:
        """``registry``: this node's sessions, closed at once (None for the command line);
        ``wake``: tells this node's runner a job is waiting."""
        self._store = store
        self._mode = DeletionMode(config.account_deletion)
        self._registry = registry
        self._wake = wake

    async def request(self, actor: Actor, user_id: UserId, *, at_ms: int) -> DeletionJob:
        """Delete ``user_id``'s account: their own (anyone), or anyone's (administrators).

        Idempotent: a second request answers the job as it is (running or done).

        Raises:
            CloisonError: forbidden (someone else's account, not an administrator), not_found
                (no such user, and no deletion of that id either).
        """
        if user_id != actor.actor_id and not actor.is_admin:
            raise CloisonError("server administrators only", code=ErrorCode.FORBIDDEN)
        asked = await self._store.request_account_deletion(
            user_id, requested_by=actor.actor_id, mode=self._mode, now_ms=at_ms
        )
        if asked is None:
            raise CloisonError("user not found", code=ErrorCode.NOT_FOUND)
        if self._registry is not None:
            self._registry.end_user(user_id, DISABLED)
        if self._wake is not None and asked.job.state is not DeletionState.DONE:
            self._wake()
        return asked.job

    async def request_own(self, actor: Actor, confirm: Any, *, at_ms: int) -> DeletionJob:
        """The caller's own deletion, if ``confirm`` repeats their user id.

        Raises:
            ProtocolViolation: ``confirm`` is not the caller's user id.
        """
        if confirm != actor.actor_id:
            raise ProtocolViolation("confirm: your user_id, to confirm the deletion")
        return await self.request(actor, UserId(actor.actor_id), at_ms=at_ms)

    async def job(self, actor: Actor, user_id: UserId) -> DeletionJob:
        if user_id != actor.actor_id and not actor.is_admin:
            raise CloisonError("server administrators only", code=ErrorCode.FORBIDDEN)
        job = await self._store.get_account_deletion(user_id)
        if job is None:
            raise CloisonError("no deletion of this account", code=ErrorCode.NOT_FOUND)
        return job


class DeletionRunner:
    """Runs the unfinished deletion jobs of the store, one after another."""

    def __init__(
        self,
        store: Store,
        config: Config,
        *,
        owner: str,
        publish: Publish | None = None,
    ) -> None:
        """``owner`` names this process in leases; ``publish`` hands the member events to
        the live path (None: the nodes catch up on their own, within their reconcile
        interval)."""
        self._store = store
        self._owner = owner
        self._publish = publish
        self._batch = config.account_deletion_batch
        self._pause_s = config.account_deletion_pause_s
        self._lease_ms = int(config.account_deletion_lease_s * 1000)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="account deletion")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        poll_s = self._lease_ms / 2000
        while True:
            try:
                await self.run_open()
            except StoreError as exc:  # retried at the next look
                logger.warning("account deletion paused (%s: %s)", type(exc).__name__, exc)
            except Exception:
                logger.exception("account deletion failed; retrying at the next look")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(poll_s):
                    await self._wake.wait()
            self._wake.clear()

    async def run_open(self) -> None:
        """Run every unfinished job this process can claim, each as far as it can go."""
        for user_id in await self._store.open_account_deletions(JOBS_PER_LOOK):
            await self.run(user_id)

    async def run(self, user_id: UserId) -> DeletionState | None:
        """Run one job as far as it can go; its state then (None: another process has it)."""
        try:
            return await self._run_job(user_id)
        except _LeaseLostError:
            return None

    async def _run_job(self, user_id: UserId) -> DeletionState | None:
        job = await self._claim(user_id)
        if job is None:
            return None
        while not job.scanned:
            if await self._store.scan_deletion_spheres(user_id, SCAN_PAGE):
                break
            job = await self._renewed(user_id)
        await self._end_memberships(job)
        held = await self._rewrite_content(job)
        if held:
            await self._store.set_deletion_state(user_id, DeletionState.HELD)
            return DeletionState.HELD
        audit = AuditEntry(
            job.requested_by, ACCOUNT_DELETED, user_id, now_ms(), detail=job.mode.value
        )
        if not await self._store.remove_deleted_user(user_id):
            return await self._run_job(user_id)  # a membership made meanwhile: once more
        await self._store.scrub()  # the name leaves the files before the job is done
        await self._store.finish_account_deletion(user_id, now_ms=now_ms(), audit=audit)
        logger.info("account deleted", extra={"user_id": user_id})
        return DeletionState.DONE

    async def _claim(self, user_id: UserId) -> DeletionJob | None:
        return await self._store.claim_account_deletion(
            user_id, owner=self._owner, now_ms=now_ms(), lease_ms=self._lease_ms
        )

    async def _renewed(self, user_id: UserId) -> DeletionJob:
        """Renew the lease between two steps; stop if another process took the job."""
        job = await self._claim(user_id)
        if job is None:
            raise _LeaseLostError
        return job

    async def _end_memberships(self, job: DeletionJob) -> None:
        store, user_id = self._store, job.user_id
        while spheres := await store.deletion_spheres(user_id, SphereStep.MEMBERSHIP, SPHERE_PAGE):
            for sphere_id in spheres:
                # A held sphere the account was the last member of waits, empty, for its hold.
                events = await store.remove_deleted_member(
                    user_id,
                    sphere_id,
                    actor=job.requested_by,
                    now_ms=now_ms(),
                    keep_empty=await self._held(sphere_id),
                )
                if any(e.kind is EventKind.SPHERE for e in events):
                    await store.scrub()  # a sphere left empty went, with all its text
                if self._publish is not None:
                    for event in events:
                        await self._publish(event)
            await self._renewed(user_id)

    async def _rewrite_content(self, job: DeletionJob) -> bool:
        """Rewrite what the account wrote, sphere by sphere; True if a hold kept some."""
        store, user_id, held = self._store, job.user_id, False
        after = ""
        while spheres := await store.deletion_spheres(
            user_id, SphereStep.CONTENT, SPHERE_PAGE, after=after
        ):
            for sphere_id in spheres:
                held = not await self._rewrite_sphere(job, sphere_id) or held
            after = spheres[-1]
        return held

    async def _held(self, sphere_id: SphereId) -> bool:
        """Is the sphere under a legal hold now (its content then waits)?"""
        sphere = await self._store.get_sphere(sphere_id)
        return sphere is not None and sphere.held(now_ms())

    async def _rewrite_sphere(self, job: DeletionJob, sphere_id: SphereId) -> bool:
        """Rewrite the account's events in one sphere, batch by batch, until none is left
        (True) or a legal hold stops it (False; a hold set meanwhile stops it at a batch)."""
        store, user_id = self._store, job.user_id
        while not await self._held(sphere_id):
            rewritten = await store.erase_deleted_content(
                user_id, sphere_id, job.mode, self._batch, now_ms=now_ms()
            )
            await store.scrub()  # the erased bytes leave the files before the next batch
            if not rewritten:
                return True
            await self._renewed(user_id)
            await asyncio.sleep(self._pause_s)
        return False


class _LeaseLostError(StoreError):
    """Another process took the job over (this one stalled past its lease): it stops here."""

    def __init__(self) -> None:
        super().__init__("another process runs this deletion job now")
