"""Group-commit planning, pure Python over rows: what a group of appends writes.

Theory of operation
-------------------
An engine's writer opens a transaction that orders it with every other writer of the spheres
involved, then reads, one statement each: the spheres' counters, the idempotency keys of the
group already stored, the (sphere, author) pairs that are members, and the posts the group's
edits and deletes target (``wanted_targets``). ``plan_group`` decides from those rows alone,
in draft order, what each draft gets:

- an unknown sphere: ``NotFoundError``;
- a key already stored (before this group or earlier in it): the stored event, duplicate;
- an author who is not a member: ``NotMemberError``;
- a post, edit or reaction by an author muted past the draft's time: ``MutedError``;
- an edit or delete whose target is not a live post (stored, or appended earlier in the
  group): ``TargetGoneError``;
- otherwise the sphere's next offset and a new row.

A domain error fails its own draft only: nothing of it is in the plan. The plan's writes (new
rows, changed posts, erased edit bodies, moved counters) are then executed by the engine in a
bounded number of statements, whatever the group's size, and committed; the outcomes stand
only once the commit has.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from protocol import EventKind, Message, SphereId
from storage.base import (
    AppendResult,
    Draft,
    NotFoundError,
    NotMemberError,
    TargetGoneError,
)
from storage.entry import MutedError
from storage.rows import Key, Outcome, draft_key

# Positions in a new events row (``storage.rows.POST_COLUMNS`` order) that edits and deletes
# change.
_BODY, _EDITED_MS, _DELETED = 6, 8, 9
# (sphere_id, offset) of an event.
Position = tuple[str, int]
# The drafts a mute refuses: those of the rights that speak (``server.access.rights``).
SPEAKING_KINDS = frozenset({EventKind.POST, EventKind.EDIT, EventKind.REACT, EventKind.UNREACT})


@dataclass(slots=True)
class Target:
    """A post that edits and deletes of the group may change, in the state the group left it.

    ``row`` is its new events row when the group itself appends the post; otherwise the post is
    stored already, and ``body``/``edited_ms``/``changed`` say what to write back.
    """

    is_post: bool
    deleted: bool
    row: list[Any] | None = None
    body: str | None = None
    edited_ms: int | None = None
    changed: bool = False


@dataclass(slots=True)
class GroupPlan:
    """What one group writes, and what each of its drafts gets once it commits."""

    outcomes: list[Outcome] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)  # new events, POST_COLUMNS order
    # Stored posts edited or deleted: (sphere_id, offset, body, edited_ms or None, deleted).
    changed: list[tuple[str, int, str | None, int | None, bool]] = field(default_factory=list)
    erased: list[Position] = field(default_factory=list)  # stored posts deleted: their edits
    moved: list[tuple[str, int]] = field(default_factory=list)  # (sphere_id, new last_offset)


def group_keys(batch: Sequence[tuple[SphereId, Draft]]) -> list[Key]:
    """The idempotency key of each draft, in order."""
    return [draft_key(sphere_id, draft) for sphere_id, draft in batch]


def group_authors(batch: Sequence[tuple[SphereId, Draft]]) -> list[tuple[str, str]]:
    """The (sphere_id, author_id) pairs of the group, once each, sorted."""
    return sorted({(sphere_id, draft.author_id) for sphere_id, draft in batch})


def wanted_targets(
    batch: Sequence[tuple[SphereId, Draft]], counters: dict[str, int]
) -> list[Position]:
    """The stored events the group's edits and deletes may name, by (sphere_id, offset)."""
    return [
        (sphere_id, draft.target)
        for sphere_id, draft in batch
        # Beyond the counter it cannot be stored (nor out of the column's range).
        if draft.target is not None and 0 < draft.target <= counters.get(sphere_id, 0)
    ]


def to_targets(rows: Iterable[Sequence[Any]]) -> dict[Position, Target]:
    """Rows of (sphere_id, stream_offset, kind, deleted) as targets."""
    return {
        (row[0], row[1]): Target(is_post=row[2] == EventKind.POST, deleted=bool(row[3]))
        for row in rows
    }


def plan_group(
    batch: Sequence[tuple[SphereId, Draft]],
    counters: dict[str, int],
    stored: dict[Key, Message],
    members: set[tuple[str, str]],
    targets: dict[Position, Target],
    muted: Mapping[tuple[str, str], int] | None = None,
) -> GroupPlan:
    """Decide the group from the rows read in its transaction (see the module's docstring).

    Args:
        batch: the drafts, in the order their appends started.
        counters: each known sphere's last offset.
        stored: the group's keys already stored, with their events.
        members: the group's (sphere_id, author_id) pairs that are members.
        targets: the stored events of ``wanted_targets``; updated in place.
        muted: the end of the mute (ms) of the group's members who have one.
    """
    plan = GroupPlan()
    counters = dict(counters)
    committed = dict(counters)
    stored = dict(stored)
    # Posts of the group are tracked as targets only if the group edits or deletes (rare).
    changes = any(draft.target is not None for _, draft in batch)
    edit_rows: dict[Position, list[list[Any]]] = {}  # new edit rows by their target
    for (sphere_id, draft), key in zip(batch, group_keys(batch), strict=True):
        last = counters.get(sphere_id)
        if last is None:
            plan.outcomes.append(NotFoundError(f"no sphere {sphere_id}"))
            continue
        if (event := stored.get(key)) is not None:
            plan.outcomes.append(AppendResult(event, duplicate=True))
            continue
        if (sphere_id, draft.author_id) not in members:
            plan.outcomes.append(
                NotMemberError(f"{draft.author_id} is not a member of {sphere_id}")
            )
            continue
        until_ms = muted.get((sphere_id, draft.author_id)) if muted else None
        if until_ms is not None and until_ms > draft.ts_ms and draft.kind in SPEAKING_KINDS:
            plan.outcomes.append(MutedError(until_ms))
            continue
        offset = last + 1
        row = [
            sphere_id,
            offset,
            draft.kind.value,
            draft.message_id,
            draft.author_id,
            draft.ts_ms,
            draft.body,
            draft.target,
            None,
            False,
        ]
        if draft.target is not None:
            target_key = (sphere_id, draft.target)
            target = targets.get(target_key)
            if target is None or not target.is_post or target.deleted:
                plan.outcomes.append(
                    TargetGoneError(f"no live post at offset {draft.target} of {sphere_id}")
                )
                continue
            if draft.kind is EventKind.EDIT:
                _edit(target, draft)
                edit_rows.setdefault(target_key, []).append(row)
            else:
                _delete(target)
                for edit_row in edit_rows.pop(target_key, []):
                    edit_row[_BODY] = None
                if target.row is None:
                    plan.erased.append(target_key)
        elif changes and draft.kind is EventKind.POST:
            targets[(sphere_id, offset)] = Target(is_post=True, deleted=False, row=row)
        event = Message(
            sphere_id=sphere_id,
            offset=offset,
            kind=draft.kind,
            message_id=draft.message_id,
            author_id=draft.author_id,
            ts_ms=draft.ts_ms,
            body=draft.body,
            target=draft.target,
        )
        counters[sphere_id] = offset
        stored[key] = event
        plan.rows.append(row)
        plan.outcomes.append(AppendResult(event, duplicate=False))
    plan.changed = [
        (sphere_id, offset, target.body, target.edited_ms, target.deleted)
        for (sphere_id, offset), target in targets.items()
        if target.changed
    ]
    plan.moved = [
        (sphere_id, last) for sphere_id, last in counters.items() if last != committed[sphere_id]
    ]
    return plan


def _edit(target: Target, draft: Draft) -> None:
    if target.row is not None:
        target.row[_BODY] = draft.body
        target.row[_EDITED_MS] = draft.ts_ms
    else:
        target.body, target.edited_ms, target.changed = draft.body, draft.ts_ms, True


def _delete(target: Target) -> None:
    target.deleted = True
    if target.row is not None:
        target.row[_BODY] = None
        target.row[_DELETED] = True
    else:
        target.body, target.changed = None, True
