"""Retention and legal hold: what the store offers the retention job and the administrators.

Retention removes a prefix of a sphere's stream: every event below the horizon
(``SphereRecord.retained_from``) is gone, rows and all, and the stream above it stays gapless,
so live delivery, gap repair and replay never meet a hole. What the removed posts left above
the horizon goes with them: their reactions, mentions, thread summaries and reports are
deleted, and the edits of them that lie above the horizon keep their place with no body (as
a deleted post's edits do). A legal hold suspends all of it while it lasts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from protocol import Message, SphereId, UserId

if TYPE_CHECKING:  # storage.base's Store inherits Retention: its names are only annotations here
    from storage.base import LegalHoldRecord, SphereRecord


@dataclass(frozen=True, slots=True)
class ExpiryBatch:
    """What one ``expire_events`` call did."""

    deleted: int  # events removed
    retained_from: int  # the horizon afterwards
    more: bool  # expired events may remain: call again
    held: bool = False  # the sphere is under a legal hold: nothing was removed


@dataclass(frozen=True, slots=True)
class RetentionStatus:
    """A sphere as ``cloison retention status`` shows it."""

    sphere_id: SphereId
    name: str
    retention_days: int | None  # the sphere's own period; None: the server's default
    retained_from: int  # the horizon (0: nothing removed)
    offset: int  # the latest event's offset
    oldest_ms: int | None  # the time of the oldest post still held (None: no post)
    run_ms: int | None  # when the job last looked at the sphere (None: never)
    hold: LegalHoldRecord | None


@dataclass(frozen=True, slots=True)
class RetentionRun:
    """One node's latest pass of the retention job over every sphere."""

    node: str
    started_ms: int
    finished_ms: int
    spheres: int  # spheres with a period that the pass looked at
    deleted: int  # events it removed


class Retention(Protocol):
    async def retention_spheres(
        self, *, everyone: bool, after: SphereId | None, limit: int
    ) -> list[SphereRecord]:
        """Spheres with a retention period of their own (``everyone``: all spheres, for a
        server that sets a default), by ascending sphere_id after ``after``."""
        ...

    async def expire_events(
        self, sphere_id: SphereId, *, before_ms: int, now_ms: int, limit: int
    ) -> ExpiryBatch:
        """Remove up to ``limit`` of the oldest events of the sphere, as long as they are
        older than ``before_ms``, and what they leave (see the module's docstring), and move
        the horizon past them; one transaction, under the sphere's lock. Nothing is removed
        while a legal hold is live at ``now_ms``. Idempotent: two nodes may run it at once.

        Raises:
            NotFoundError: no such sphere.
        """
        ...

    async def finish_retention(
        self, sphere_id: SphereId, *, now_ms: int, deleted: int, actor_id: str
    ) -> None:
        """Record that the job looked at the sphere at ``now_ms``; if it removed anything, the
        sphere's audit log says how many events and the new horizon."""
        ...

    async def record_retention_run(self, run: RetentionRun) -> None:
        """Keep ``run`` as its node's latest pass."""
        ...

    async def retention_runs(self) -> list[RetentionRun]:
        """Every node's latest pass, the most recent first."""
        ...

    async def retention_status(
        self, *, sphere_id: SphereId | None = None, after: SphereId | None = None, limit: int
    ) -> list[RetentionStatus]:
        """One sphere (``sphere_id``), or spheres by ascending id after ``after``."""
        ...

    async def set_legal_hold(
        self,
        sphere_id: SphereId,
        actor_id: UserId,
        *,
        until_ms: int | None,
        reason: str,
        now_ms: int,
    ) -> tuple[SphereRecord, Message]:
        """Set (or replace) the sphere's legal hold, with its ``sphere`` event (the sphere's
        next offset), the sphere's audit entry and the server's, in one transaction.

        Raises:
            NotFoundError: no such sphere.
        """
        ...

    async def release_legal_hold(
        self, sphere_id: SphereId, actor_id: UserId, *, now_ms: int
    ) -> tuple[SphereRecord, Message | None]:
        """Lift the sphere's legal hold, as ``set_legal_hold`` writes it (no event when there
        was none).

        Raises:
            NotFoundError: no such sphere.
        """
        ...
