"""The dispatcher: one path from a validated frame to its handler, through the rights check.

``Operations.handle`` takes an authenticated caller and a validated frame, finds its row in the
operation table, spends its rate class, checks the organisation right the row names against
the organisation the frame names (``server.access.org_rights.authorise_org``) and the rights it
names against the sphere the frame names (``server.access.authorise``), and runs the handler
the row's capability module registered. It raises ``CloisonError`` subclasses for every
refusal; the transports turn them into error frames or HTTP responses in one place each.

Writes (rows with ``writes``) take a second door with the same check: ``prepare_write``
checks and builds the draft without storing anything, ``commit_write`` appends it. The
gateway calls them apart to keep each connection's pipelined writes in send order.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from protocol import (
    Ack,
    Auth,
    CloisonError,
    ErrorCode,
    Frame,
    RateLimitedError,
)
from server import access
from server.access import Granted
from server.access.org_rights import authorise_org, org_not_found
from server.config import Config
from server.conversations import ConversationReads, ConversationWrites
from server.conversations.direct import DirectHandlers
from server.governance.audit import AuditHandlers
from server.governance.charter import CharterHandlers
from server.governance.entry import EntryHandlers
from server.governance.moderation import ModerationHandlers
from server.governance.organisations import OrgHandlers
from server.governance.reports import ReportHandlers
from server.hub import Hub
from server.operations.context import Caller, Deps, Handler, PreparedWrite, WriteHandler
from server.operations.messages import MessageHandlers
from server.operations.spheres import SphereHandlers
from server.operations.table import BY_FRAME, OPERATIONS, Operation
from server.privacy.handlers import SphereExportHandlers
from server.ratelimit import RateClass, WriteLimiter
from storage import NotMemberError, OutcomeUnknownError, Store


class Operations:
    def __init__(
        self,
        store: Store,
        hub: Hub,
        limits: Mapping[RateClass, WriteLimiter],
        config: Config,
    ) -> None:
        self._store = store
        self._hub = self.hub = hub
        self._limits = limits
        self._deps = deps = Deps(store, hub, config)
        self.spheres = SphereHandlers(deps)
        messages = MessageHandlers(deps)
        self._handlers: dict[type[Frame], Handler] = {}
        self._writes: dict[type[Frame], WriteHandler] = {}
        for module in (
            messages,
            self.spheres,
            AuditHandlers(deps),
            ConversationReads(deps),
            ReportHandlers(deps),
            CharterHandlers(deps),
            EntryHandlers(deps, self.spheres),
            ModerationHandlers(deps),
            SphereExportHandlers(deps),
            DirectHandlers(deps, self.spheres),
            OrgHandlers(deps, self.spheres),
        ):
            self._handlers.update(module.handlers())
        for writer in (messages, ConversationWrites()):
            self._writes.update(writer.writes())

    def missing(self) -> list[Operation]:
        """Rows of the operation table no capability module handles (a test keeps it empty)."""
        handled = self._handlers.keys() | self._writes.keys() | {Auth}  # auth: the gateway's
        return [op for op in OPERATIONS if op.frame not in handled]

    async def handle(self, caller: Caller, frame: Frame) -> Frame | None:
        op = BY_FRAME.get(type(frame))
        if op is not None and op.writes:
            return await self.commit_write(await self.prepare_write(caller, frame))
        handler = self._handlers.get(type(frame))
        if op is None or handler is None:
            raise CloisonError(f"{frame.TYPE} is not a request", code=ErrorCode.BAD_FRAME)
        await self._spend(caller, op.rate)
        caller = await self._authorise_org(caller, frame, op)
        return await handler(caller, frame, await self._authorise(caller, frame, op))

    async def _authorise_org(self, caller: Caller, frame: Frame, op: Operation) -> Caller:
        """The organisation check of ``op``: the caller, with what it found."""
        if op.org_right is None:
            return caller
        user_id = caller.user.user_id
        org_id = getattr(frame, "org_id", None)
        if org_id is None:
            # A frame that may leave its organisation out names the caller's only one.
            orgs = await self._store.user_orgs(user_id)
            if not orgs:
                raise org_not_found()
            if len(orgs) > 1:
                raise CloisonError(
                    "org_id: you belong to several organisations; name one",
                    code=ErrorCode.BAD_FRAME,
                )
            org_id = orgs[0].org.org_id
        grant = await authorise_org(self._store, user_id, org_id, op.org_right)
        return dataclasses.replace(caller, org=grant)

    async def _authorise(self, caller: Caller, frame: Frame, op: Operation) -> Granted | None:
        """The rights check of ``op``, when the frame names a sphere."""
        sphere_id = getattr(frame, "sphere_id", None)
        rights = op.rights_for(frame)
        if sphere_id is None or not rights:
            return None
        return await access.authorise(
            self._store, self._hub.current_access, caller.user.user_id, sphere_id, rights
        )

    async def _spend(self, caller: Caller, cls: RateClass) -> None:
        """Take one token of ``cls`` from the caller's bucket, or raise ``rate_limited``."""
        limiter = self._limits.get(cls)
        if limiter is None:
            return  # RateClass.FREE
        wait_s = await limiter.take(caller.user.user_id)
        if wait_s:
            raise RateLimitedError(
                f"too many requests of class {cls}", retry_after_ms=max(1, math.ceil(wait_s * 1000))
            )

    async def prepare_write(self, caller: Caller, frame: Frame) -> PreparedWrite:
        """Check a write (size, rights, rate) and build its draft; nothing is stored yet.

        A connection prepares its writes one after another and starts their commits in the
        same order, so the store sequences each sender's writes in the order they were sent.
        """
        op = BY_FRAME[type(frame)]
        handler = self._writes.get(type(frame))
        if handler is None:
            raise CloisonError(f"{frame.TYPE} is not a request", code=ErrorCode.BAD_FRAME)
        body = getattr(frame, "body", None)
        if body is not None:
            self._deps.check_body(body)  # the documented precedence: size before access
        caller = await self._authorise_org(caller, frame, op)
        grant = await self._authorise(caller, frame, op)
        assert grant is not None, f"{frame.TYPE} names no sphere"
        prepared = await handler(caller, frame, grant)
        await self._spend(caller, op.rate)
        return prepared

    async def commit_write(self, write: PreparedWrite) -> Ack:
        """Append a prepared write durably, hand it to fan-out, and build the ack."""
        sphere_id, ref = write.sphere_id, write.ref
        try:
            result = await self._store.append(sphere_id, write.draft)
        except NotMemberError:
            # The author lost membership before the write was sequenced (maybe through
            # another node): refused as access.py would have refused it up front.
            raise await access.refused_write(
                self._store, sphere_id, write.draft.author_id
            ) from None
        except OutcomeUnknownError:
            # It may be stored: deliver it here if so, without waiting for the next write.
            self._hub.resync(sphere_id)
            raise
        # A duplicate is published again too: if the first attempt committed but never
        # reached the broker (a crash in between), this heals it; nodes drop what they have.
        await self._hub.publish(result.event)
        event = result.event
        return Ack(
            sphere_id=sphere_id,
            message_id=event.message_id,
            offset=event.offset,
            ts_ms=event.ts_ms,
            duplicate=result.duplicate,
            ref=ref,
        )
