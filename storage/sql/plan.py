"""Group-commit planning, pure Python over rows: what a group of appends writes.

Theory of operation
-------------------
An engine's writer opens a transaction that orders it with every other writer of the spheres
involved, then reads, one statement each: the spheres' counters, the idempotency keys of the
group already stored, the (sphere, author) pairs that are members, the posts the group's
edits, deletes, reactions, pins and replies name (``wanted_targets``), and, when the group
replies, reacts, pins or mentions anyone, the floors of the members concerned
(``wanted_floors``: the first offset each may read). ``plan_group`` decides from those rows
alone, in draft order, what each draft gets:

- an unknown sphere: ``NotFoundError``;
- a key already stored (before this group or earlier in it): the stored event, duplicate;
- an author who is not a member: ``NotMemberError``;
- a post, edit or reaction by an author muted past the draft's time: ``MutedError``;
- a draft to a sphere of a suspended organisation: ``OrgSuspendedError``; one that would pass
  a quota of its organisation: ``QuotaExceededError`` (``storage.usage.OrgGate``, read in the
  same transaction, counts what the group appends);
- a draft whose target (or the post a reply answers) is not a live post (stored, or appended
  earlier in the group), or, for a reply, reaction or pin, lies below its author's floor:
  ``TargetGoneError``;
- otherwise the sphere's next offset and a new row.

A domain error fails its own draft only: nothing of it is in the plan. Beside the new rows the
plan says what the events change (``storage.sql.conversations`` writes those parts): posts'
bodies, mentions and pins, reactions, thread summaries, mention rows and the audit entries of
moderators' deletions and of pins. The engine executes it in a bounded number of statements,
whatever the group's size, and commits; the outcomes stand only once the commit has.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from protocol import EventKind, Message, SphereId, UserId
from storage.audit import AuditAction
from storage.base import (
    AppendResult,
    Draft,
    NotFoundError,
    NotMemberError,
    TargetGoneError,
)
from storage.conversations import mention_candidates
from storage.entry import MutedError
from storage.rows import Key, Outcome, draft_key, mentions_column
from storage.usage import OrgGate

# Positions in a new events row (``storage.rows.POST_COLUMNS`` order) that later drafts of
# the group change.
_BODY, _EDITED_MS, _DELETED, _MENTIONS, _PINNED = 6, 8, 9, 13, 14
# (sphere_id, offset) of an event.
Position = tuple[str, int]
# The drafts a mute refuses: those of the rights that speak (``server.access.rights``).
SPEAKING_KINDS = frozenset({EventKind.POST, EventKind.EDIT, EventKind.REACT, EventKind.UNREACT})
# (sphere_id, target, emoji, user_id): one user's reaction with one emoji.
ReactionKey = tuple[str, int, str, str]
# Drafts that must name a post their author may read (at or above their floor).
_READER_KINDS = frozenset({EventKind.REACT, EventKind.UNREACT, EventKind.PIN, EventKind.UNPIN})


@dataclass(slots=True)
class Target:
    """A post that later drafts of the group may change, in the state the group left it.

    ``row`` is its new events row when the group itself appends the post; otherwise the post is
    stored already, and ``body``/``edited_ms``/``mentions``/``changed`` and ``pin_changed`` say
    what to write back.
    """

    is_post: bool
    deleted: bool
    author_id: str = ""
    ts_ms: int = 0
    thread_root: int | None = None  # a reply: the first post of its thread
    pinned: bool = False
    row: list[Any] | None = None
    body: str | None = None
    edited_ms: int | None = None
    mentions: list[UserId] | None = None
    changed: bool = False
    pin_changed: bool = False


@dataclass(slots=True)
class Reaction:
    """What the group does to one reaction: remove the stored one, add one (at ``offset``)."""

    remove: bool = False
    offset: int | None = None


@dataclass(slots=True)
class GroupPlan:
    """What one group writes, and what each of its drafts gets once it commits."""

    outcomes: list[Outcome] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)  # new events, POST_COLUMNS order
    # Stored posts edited or deleted:
    # (sphere_id, offset, body, edited_ms or None, deleted, mentions column).
    changed: list[tuple[str, int, str | None, int | None, bool, str | None]] = field(
        default_factory=list
    )
    erased: list[Position] = field(default_factory=list)  # stored posts deleted: their edits
    moved: list[tuple[str, int]] = field(default_factory=list)  # (sphere_id, new last_offset)
    pinned: list[tuple[bool, str, int]] = field(default_factory=list)  # stored posts
    reactions: dict[ReactionKey, Reaction] = field(default_factory=dict)
    cleared: list[Position] = field(default_factory=list)  # stored posts deleted: reactions
    # Posts whose mentions the group set: their post's ts_ms and the users mentioned; a
    # stored one's rows are replaced.
    mentioned: dict[Position, tuple[int, list[UserId]]] = field(default_factory=dict)
    remention: list[Position] = field(default_factory=list)  # stored posts among them
    # (sphere_id, root) -> [replies added, latest reply's offset, its ts_ms]
    threads: dict[Position, list[int]] = field(default_factory=dict)
    # Audit entries: (sphere_id, ts_ms, actor_id, action, target_id, offset, detail).
    audits: list[tuple[str, int, str, str, str, int, str | None]] = field(default_factory=list)


def group_keys(batch: Sequence[tuple[SphereId, Draft]]) -> list[Key]:
    """The idempotency key of each draft, in order."""
    return [draft_key(sphere_id, draft) for sphere_id, draft in batch]


def group_authors(batch: Sequence[tuple[SphereId, Draft]]) -> list[tuple[str, str]]:
    """The (sphere_id, author_id) pairs of the group, once each, sorted."""
    return sorted({(sphere_id, draft.author_id) for sphere_id, draft in batch})


def _named(draft: Draft) -> int | None:
    """The post a draft names: its target, or the post it replies to."""
    return draft.target if draft.target is not None else draft.reply_to


def wanted_targets(
    batch: Sequence[tuple[SphereId, Draft]], counters: dict[str, int]
) -> list[Position]:
    """The stored events the group's drafts may name, by (sphere_id, offset)."""
    return [
        (sphere_id, named)
        for sphere_id, draft in batch
        # Beyond the counter it cannot be stored (nor out of the column's range).
        if (named := _named(draft)) is not None and 0 < named <= counters.get(sphere_id, 0)
    ]


def wanted_floors(batch: Sequence[tuple[SphereId, Draft]]) -> list[tuple[str, str]]:
    """The (sphere_id, user_id) pairs whose floor the group needs: the authors of replies,
    reactions and pins, and the users its posts and edits mention; sorted, once each."""
    pairs: set[tuple[str, str]] = set()
    for sphere_id, draft in batch:
        if draft.kind in _READER_KINDS or draft.reply_to is not None:
            pairs.add((sphere_id, draft.author_id))
        if draft.body is not None:
            pairs.update((sphere_id, user_id) for user_id in mention_candidates(draft.body))
    return sorted(pairs)


def to_targets(rows: Iterable[Sequence[Any]]) -> dict[Position, Target]:
    """Rows of (sphere_id, stream_offset, kind, deleted, author_id, ts_ms, thread_root,
    pinned) as targets."""
    return {
        (row[0], row[1]): Target(
            is_post=row[2] == EventKind.POST,
            deleted=bool(row[3]),
            author_id=row[4],
            ts_ms=row[5],
            thread_root=row[6],
            pinned=bool(row[7]),
        )
        for row in rows
    }


def plan_group(
    batch: Sequence[tuple[SphereId, Draft]],
    counters: dict[str, int],
    stored: dict[Key, Message],
    members: set[tuple[str, str]],
    targets: dict[Position, Target],
    floors: dict[tuple[str, str], int] | None = None,
    muted: Mapping[tuple[str, str], int] | None = None,
    gate: OrgGate | None = None,
) -> GroupPlan:
    """Decide the group from the rows read in its transaction (see the module's docstring).

    Args:
        batch: the drafts, in the order their appends started.
        counters: each known sphere's last offset.
        stored: the group's keys already stored, with their events.
        members: the group's (sphere_id, author_id) pairs that are members.
        targets: the stored events of ``wanted_targets``; updated in place.
        floors: the members among ``wanted_floors``, with the first offset each may read.
        muted: the end of the mute (ms) of the group's members who have one.
        gate: the organisations of the group's spheres, their suspension and quotas.
    """
    planner = _Planner(GroupPlan(), targets, floors or {})
    plan = planner.plan
    counters = dict(counters)
    committed = dict(counters)
    stored = dict(stored)
    # Posts of the group are tracked as targets only if the group names posts (rare).
    planner.track = any(_named(draft) is not None for _, draft in batch)
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
        if gate is not None:
            refusal = gate.refusal(sphere_id, draft.kind, draft.ts_ms, draft.body)
            if refusal is not None:
                plan.outcomes.append(refusal)
                continue
        event = planner.draft(sphere_id, draft, last + 1)
        if event is None:
            continue
        if gate is not None:
            gate.count(sphere_id, draft.kind, draft.ts_ms, draft.body)
        counters[sphere_id] = event.offset
        stored[key] = event
        plan.outcomes.append(AppendResult(event, duplicate=False))
    plan.changed = [
        (sphere_id, offset, t.body, t.edited_ms, t.deleted, mentions_column(t.mentions))
        for (sphere_id, offset), t in targets.items()
        if t.changed
    ]
    plan.pinned = [
        (t.pinned, sphere_id, offset) for (sphere_id, offset), t in targets.items() if t.pin_changed
    ]
    plan.moved = [
        (sphere_id, last) for sphere_id, last in counters.items() if last != committed[sphere_id]
    ]
    return plan


class _Planner:
    """The effects of one group's drafts, applied in draft order to the targets' state."""

    def __init__(
        self, plan: GroupPlan, targets: dict[Position, Target], floors: dict[tuple[str, str], int]
    ) -> None:
        self.plan = plan
        self.targets = targets
        self.floors = floors
        self.track = False
        self.edit_rows: dict[Position, list[list[Any]]] = {}  # new edit rows by their target

    def draft(self, sphere_id: str, draft: Draft, offset: int) -> Message | None:
        """Plan ``draft`` at ``offset``: its event, or None when it failed (outcome added)."""
        row: list[Any] = [
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
            draft.reply_to,
            None,
            draft.emoji,
            None,
            False,
        ]
        named = _named(draft)
        target = None
        if named is not None:
            target = self.targets.get((sphere_id, named))
            floor = self.floors.get((sphere_id, draft.author_id), 0)
            reads = draft.kind in _READER_KINDS or draft.reply_to is not None
            if target is None or not target.is_post or target.deleted or (reads and named < floor):
                self.plan.outcomes.append(
                    TargetGoneError(f"no live post at offset {named} of {sphere_id}")
                )
                return None
        mentions: list[UserId] | None = None
        if draft.kind is EventKind.POST:
            assert draft.body is not None
            mentions = self._mentions(sphere_id, draft.body, offset, draft.ts_ms)
            if target is not None and named is not None:
                row[11] = root = target.thread_root or named
                thread = self.plan.threads.setdefault((sphere_id, root), [0, 0, 0])
                thread[0] += 1
                thread[1:] = [offset, draft.ts_ms]
            if self.track:
                self.targets[(sphere_id, offset)] = Target(
                    is_post=True,
                    deleted=False,
                    author_id=draft.author_id,
                    ts_ms=draft.ts_ms,
                    thread_root=row[11],
                    row=row,
                )
        elif target is not None and named is not None:
            mentions = self._change(sphere_id, named, target, draft, row, offset)
        row[_MENTIONS] = mentions_column(mentions)
        self.plan.rows.append(row)
        return Message(
            sphere_id=SphereId(sphere_id),
            offset=offset,
            kind=draft.kind,
            message_id=draft.message_id,
            author_id=draft.author_id,
            ts_ms=draft.ts_ms,
            body=draft.body,
            target=draft.target,
            reply_to=draft.reply_to,
            mentions=mentions,
            emoji=draft.emoji,
        )

    def _mentions(
        self, sphere_id: str, body: str, post: int, post_ts_ms: int
    ) -> list[UserId] | None:
        """The users ``body`` mentions who are members that may read the post at ``post``,
        recorded as that post's mentions."""
        found = [
            user_id
            for user_id in mention_candidates(body)
            if self.floors.get((sphere_id, user_id), post + 1) <= post
        ]
        self.plan.mentioned[(sphere_id, post)] = (post_ts_ms, found)
        return found or None

    def _change(
        self, sphere_id: str, named: int, target: Target, draft: Draft, row: list[Any], offset: int
    ) -> list[UserId] | None:
        """Apply an edit, delete, reaction or pin of the post at ``named``; the mentions the
        new event carries."""
        position = (sphere_id, named)
        kind = draft.kind
        if kind is EventKind.EDIT:
            assert draft.body is not None
            mentions = self._mentions(sphere_id, draft.body, named, target.ts_ms)
            _edit(target, draft, mentions)
            if target.row is None and position not in self.plan.remention:
                self.plan.remention.append(position)
            self.edit_rows.setdefault(position, []).append(row)
            return mentions
        if kind is EventKind.DELETE:
            self._delete(position, target, draft)
        elif kind in (EventKind.REACT, EventKind.UNREACT):
            assert draft.emoji is not None
            key = (sphere_id, named, draft.emoji, draft.author_id)
            reaction = self.plan.reactions.setdefault(key, Reaction())
            if kind is EventKind.UNREACT:
                reaction.remove, reaction.offset = True, None
            elif reaction.offset is None:
                reaction.offset = offset
        else:
            self._pin(position, target, draft)
        return None

    def _delete(self, position: Position, target: Target, draft: Draft) -> None:
        _delete(target)
        for edit_row in self.edit_rows.pop(position, []):
            edit_row[_BODY] = edit_row[_MENTIONS] = None
        self.plan.reactions = {
            key: r for key, r in self.plan.reactions.items() if key[:2] != position
        }
        self.plan.mentioned[position] = (target.ts_ms, [])
        if target.row is None:
            self.plan.erased.append(position)
            self.plan.cleared.append(position)
            if position not in self.plan.remention:
                self.plan.remention.append(position)
        if draft.author_id != target.author_id:
            self._audit(AuditAction.MESSAGE_DELETED, position, target, draft)

    def _pin(self, position: Position, target: Target, draft: Draft) -> None:
        pinned = draft.kind is EventKind.PIN
        if target.pinned is pinned:
            return  # an event all the same; the post's state and the audit log do not change
        _set_pinned(target, pinned)
        action = AuditAction.MESSAGE_PINNED if pinned else AuditAction.MESSAGE_UNPINNED
        self._audit(action, position, target, draft)

    def _audit(self, action: AuditAction, position: Position, target: Target, draft: Draft) -> None:
        sphere_id, named = position
        self.plan.audits.append(
            (sphere_id, draft.ts_ms, draft.author_id, action.value, target.author_id, named, None)
        )


def _edit(target: Target, draft: Draft, mentions: list[UserId] | None) -> None:
    if target.row is not None:
        target.row[_BODY] = draft.body
        target.row[_EDITED_MS] = draft.ts_ms
        target.row[_MENTIONS] = mentions_column(mentions)
    else:
        target.body, target.edited_ms, target.changed = draft.body, draft.ts_ms, True
        target.mentions = mentions


def _delete(target: Target) -> None:
    target.deleted = True
    if target.pinned:
        _set_pinned(target, False)
    if target.row is not None:
        target.row[_BODY] = target.row[_MENTIONS] = None
        target.row[_DELETED] = True
    else:
        target.body, target.mentions, target.changed = None, None, True


def _set_pinned(target: Target, pinned: bool) -> None:
    target.pinned = pinned
    if target.row is not None:
        target.row[_PINNED] = pinned
    else:
        target.pin_changed = True
