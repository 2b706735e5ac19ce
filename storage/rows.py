"""What every SQL backend shares: rows to records, draft and limit checks, writer counters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from protocol import (
    CloisonError,
    EventKind,
    Message,
    MessageId,
    Privacy,
    Role,
    SphereId,
    UserId,
)
from storage.base import AppendResult, Draft, SphereRecord

# A member's Role.rank in SQL, generated so that Role.rank stays the only definition.
ROLE_RANK_SQL = (
    "CASE m.role " + " ".join(f"WHEN '{r.value}' THEN {r.rank}" for r in Role) + " ELSE 0 END"
)

# (sphere_id, author_id, message_id): the idempotency key of a draft.
Key = tuple[str, str, str]
# What one queued draft gets: its result, or the domain error that fails it alone.
Outcome = AppendResult | CloisonError


@dataclass(frozen=True, slots=True)
class WriterStats:
    """Counters of the group-commit writer since the store opened."""

    commits: int  # groups committed
    appends: int  # drafts in those groups, duplicates and failed drafts included
    failed_groups: int = 0  # groups that failed (rolled back, or with an unknown outcome)
    unknown_groups: int = 0  # of those, groups whose commit may or may not have landed


def check_draft(draft: Draft) -> None:
    """Reject a draft no client frame can produce: a caller's bug, not a peer's."""
    needs_body = draft.kind is not EventKind.DELETE
    needs_target = draft.kind is not EventKind.POST
    if (draft.body is not None) != needs_body or (draft.target is not None) != needs_target:
        raise ValueError(f"a {draft.kind} draft with the wrong body or target")


def check_limit(limit: int) -> None:
    # SQLite reads a negative LIMIT as "no limit"; every backend refuses it alike.
    if limit < 1:
        raise ValueError(f"limit must be positive, not {limit}")


def draft_key(sphere_id: SphereId, draft: Draft) -> Key:
    return (sphere_id, draft.author_id, draft.message_id)


def to_message(row: Any) -> Message:
    """An event row: (sphere_id, offset, kind, message_id, author_id, ts_ms, body, target,
    edited_ms, deleted)."""
    sphere_id, offset, kind, message_id, author_id, ts_ms, body, target, edited_ms, deleted = row
    return Message(
        sphere_id=SphereId(sphere_id),
        offset=offset,
        kind=EventKind(kind),
        message_id=MessageId(message_id),
        author_id=UserId(author_id),
        ts_ms=ts_ms,
        body=body,
        target=target,
        edited_ms=edited_ms,
        deleted=bool(deleted),
    )


def to_sphere(row: Any) -> SphereRecord:
    """A sphere row: (sphere_id, name, privacy, epoch, offset, created_ms)."""
    sphere_id, name, privacy, epoch, offset, created_ms = row
    return SphereRecord(sphere_id, name, Privacy(privacy), epoch, offset, created_ms)
