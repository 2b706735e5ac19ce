"""An organisation's lifecycle, by a server administrator: the one code path of the HTTP
admin routes and of ``cloison org`` (docs/operations.md, "Organisations").

Theory of operation
-------------------
Creating, suspending and resuming are one store transaction each, audited in the
organisation's log and the server's. A suspension also writes the session changes every node
polls (``server.sessions.watcher``): each node ends its live subscriptions to the
organisation's spheres, and the sockets of the members who can no longer sign in; this node
does so at once.

Deleting is a job (``storage.lifecycle``): the request suspends the organisation and answers
202; ``OrgDeletionRunner``, in the background of every gateway (and of ``cloison org delete
--wait``), deletes its spheres one per transaction (publishing each closing event, scrubbing
the files after each), hands the accounts that belonged to it only to the account deletion
job, then removes its memberships, its row and its audit log, scrubs, and marks the job done
with the server's ``org_deleted`` entry. A lease on the job's row keeps two processes from
running one job at once; every step finds its own work, so a crash resumes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from protocol import CloisonError, ErrorCode, Message, OrgId, UserId
from server.config import Config
from server.operations import now_ms
from server.sessions.accounts import Actor, valid_name
from storage import (
    DEFAULT_ORG,
    ORG_NOT_FOUND,
    AuditEntry,
    DeletionMode,
    OrgAction,
    OrgDeletionJob,
    OrgDeletionState,
    OrgRecord,
    Store,
    StoreError,
)

logger = logging.getLogger(__name__)

NO_SUCH_ORG = ORG_NOT_FOUND  # as every organisation route answers
# Why: a page of members per transaction, each of whom may get an account deletion request
# (a few rows each): short enough not to hold up the writer.
MEMBER_PAGE = 100
# Why: jobs started per look; the others wait for the next one.
JOBS_PER_LOOK = 20

Publish = Callable[[Message], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class OrgSummary:
    org: OrgRecord
    members: int
    spheres: int
    deletion: OrgDeletionJob | None


class OrgLifecycleService:
    def __init__(
        self,
        store: Store,
        config: Config,
        *,
        end_org: Callable[[OrgId], object] | None = None,
        wake: Callable[[], None] | None = None,
    ) -> None:
        """``end_org``: ends this node's subscriptions to an organisation's spheres and the
        sessions its suspension stranded, at once (None for the command line); ``wake``: tells
        this node's deletion runner a job waits."""
        self._store = store
        self._mode = DeletionMode(config.account_deletion)
        self._end_org = end_org
        self._wake = wake

    async def create(
        self,
        actor: Actor,
        name: object,
        *,
        manager_id: UserId | None = None,
        org_id: OrgId | None = None,
    ) -> OrgRecord:
        """Raises: CloisonError: not_found (no such manager), conflict (the id is taken, or
        was an organisation's that was deleted), bad_frame."""
        if org_id is not None and await self._store.get_org_deletion(org_id) is not None:
            raise CloisonError(f"the organisation {org_id} exists already", code=ErrorCode.CONFLICT)
        return await self._store.create_org(
            valid_name(name),
            now_ms=now_ms(),
            actor_id=actor.actor_id,
            manager_id=manager_id,
            org_id=org_id,
        )

    async def list(self, *, after: OrgId | None, limit: int) -> list[OrgRecord]:
        return await self._store.list_orgs(after=after, limit=limit)

    async def show(self, org_id: OrgId) -> OrgSummary:
        org = await self._store.get_org(org_id)
        if org is None:
            raise CloisonError(NO_SUCH_ORG, code=ErrorCode.NOT_FOUND)
        return OrgSummary(
            org,
            await self._store.count_org_members(org_id),
            await self._store.count_org_spheres(org_id),
            await self._store.get_org_deletion(org_id),
        )

    async def set_suspended(self, actor: Actor, org_id: OrgId, suspended: bool) -> OrgRecord:
        """Suspend or resume (idempotent). A job deleting the organisation keeps it suspended.

        Raises: CloisonError: not_found, conflict (resuming an organisation being deleted).
        """
        if not suspended and await self._store.get_org_deletion(org_id) is not None:
            raise CloisonError("the organisation is being deleted", code=ErrorCode.CONFLICT)
        done = await self._store.set_org_suspended(
            org_id, suspended, now_ms=now_ms(), actor_id=actor.actor_id
        )
        if done is None:
            raise CloisonError(NO_SUCH_ORG, code=ErrorCode.NOT_FOUND)
        org, changed = done
        if changed and suspended and self._end_org is not None:
            self._end_org(org_id)
        return org

    async def delete(self, actor: Actor, org_id: OrgId) -> OrgDeletionJob:
        """Start (or answer) the organisation's deletion job.

        Raises: CloisonError: not_found, conflict (the default organisation).
        """
        if org_id == DEFAULT_ORG:
            raise CloisonError(
                "the default organisation holds every account created without one; "
                "it cannot be deleted",
                code=ErrorCode.CONFLICT,
            )
        org = await self._store.get_org(org_id)
        mode = org.policies.erasure if org is not None and org.policies.erasure else self._mode
        asked = await self._store.request_org_deletion(
            org_id, requested_by=actor.actor_id, mode=mode, now_ms=now_ms()
        )
        if asked is None:
            raise CloisonError(NO_SUCH_ORG, code=ErrorCode.NOT_FOUND)
        job, created = asked
        if created and self._end_org is not None:
            self._end_org(org_id)
        if self._wake is not None and job.state is not OrgDeletionState.DONE:
            self._wake()
        return job

    async def job(self, org_id: OrgId) -> OrgDeletionJob:
        job = await self._store.get_org_deletion(org_id)
        if job is None:
            raise CloisonError("no deletion of this organisation", code=ErrorCode.NOT_FOUND)
        return job


class OrgDeletionRunner:
    """Runs the unfinished organisation deletion jobs of the store, one after another."""

    def __init__(
        self,
        store: Store,
        config: Config,
        *,
        owner: str,
        publish: Publish | None = None,
        accounts: Callable[[], None] | None = None,
    ) -> None:
        """``owner`` names this process in leases; ``publish`` hands the deleted spheres'
        closing events to the live path; ``accounts`` wakes the account deletion runner once
        accounts were handed over."""
        self._store = store
        self._owner = owner
        self._publish = publish
        self._accounts = accounts
        self._lease_ms = int(config.account_deletion_lease_s * 1000)
        self._pause_s = config.account_deletion_pause_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="organisation deletion")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                for org_id in await self._store.open_org_deletions(JOBS_PER_LOOK):
                    await self.run(org_id)
            except StoreError as exc:
                logger.warning("organisation deletion paused (%s: %s)", type(exc).__name__, exc)
            except Exception:
                logger.exception("organisation deletion failed; retrying at the next look")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._lease_ms / 2000):
                    await self._wake.wait()
            self._wake.clear()

    async def run(self, org_id: OrgId) -> OrgDeletionState | None:
        """Run one job as far as it can go; its state then (None: another process has it)."""
        store = self._store
        if await self._claim(org_id) is None:
            return None
        held = False
        while True:
            step = await store.delete_org_sphere(org_id, now_ms=now_ms())
            if step.event is None:
                held = step.held
                break
            await store.scrub()  # the sphere's text leaves the files before the next one
            if self._publish is not None:
                await self._publish(step.event)
            if await self._claim(org_id) is None:
                return None
            await asyncio.sleep(self._pause_s)
        while not await store.hand_over_org_members(org_id, MEMBER_PAGE, now_ms=now_ms()):
            if await self._claim(org_id) is None:
                return None
        if self._accounts is not None:
            self._accounts()
        if held:
            await store.set_org_deletion_state(org_id, OrgDeletionState.HELD)
            return OrgDeletionState.HELD
        job = await store.get_org_deletion(org_id)
        if job is None or not await store.remove_org(org_id):
            return OrgDeletionState.PENDING  # a sphere made meanwhile: the next look takes it
        await store.scrub()
        detail = f"{org_id} spheres={job.spheres_deleted} accounts={job.accounts_handed_over}"
        audit = AuditEntry(job.requested_by, OrgAction.DELETED.value, None, now_ms(), detail=detail)
        await store.finish_org_deletion(org_id, now_ms=now_ms(), audit=audit)
        logger.info("organisation deleted", extra={"org_id": org_id})
        return OrgDeletionState.DONE

    async def _claim(self, org_id: OrgId) -> OrgDeletionJob | None:
        return await self._store.claim_org_deletion(
            org_id, owner=self._owner, now_ms=now_ms(), lease_ms=self._lease_ms
        )
