"""What every SQL backend shares: rows to records, draft and limit checks, writer counters."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from protocol import (
    CloisonError,
    EventKind,
    HistoryMode,
    JoinPolicy,
    LegalHold,
    MemberAction,
    Message,
    MessageId,
    Privacy,
    Role,
    SphereId,
    SphereSummary,
    UserId,
)
from storage.base import AppendResult, Draft, LegalHoldRecord, MemberChange, SphereRecord
from storage.settings import SphereSettings

# Every column of an events row, in the order ``to_message`` reads them.
EVENT_COLUMNS = (
    "sphere_id, stream_offset, kind, message_id, author_id, ts_ms, body, target, edited_ms, "
    "deleted, member_id, member_name, member_role, member_action, privacy, reply_to, emoji, "
    "mentions, pinned, sphere_name, listed, join_policy, history_mode, charter_version, "
    "until_ms, retention_days, hold_since_ms, hold_until_ms"
)
EVENT_WIDTH = len(EVENT_COLUMNS.split(", "))
# The columns the group commit sets (posts, edits, deletes, reactions, pins; others stay NULL).
POST_COLUMNS = (
    "sphere_id, stream_offset, kind, message_id, author_id, ts_ms, body, target, edited_ms, "
    "deleted, reply_to, thread_root, emoji, mentions, pinned"
)
POST_WIDTH = len(POST_COLUMNS.split(", "))
# The author column of an event without author (a deleted account's, one the server wrote);
# None in a ``Message``. No user id is empty, so no user can ever match it.
NO_AUTHOR = ""
# Why 65: a client's message_id has at most 64 characters, so a server-made key never takes
# the idempotency key of a client's write.
_SERVER_KEY_HEX_CHARS = 64

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


# What each kind of draft carries: (body, target, emoji); reply_to only a post may carry.
_DRAFT_SHAPES = {
    EventKind.POST: (True, False, False),
    EventKind.EDIT: (True, True, False),
    EventKind.DELETE: (False, True, False),
    EventKind.REACT: (False, True, True),
    EventKind.UNREACT: (False, True, True),
    EventKind.PIN: (False, True, False),
    EventKind.UNPIN: (False, True, False),
}


def check_draft(draft: Draft) -> None:
    """Reject a draft no client frame can produce: a caller's bug, not a peer's."""
    shape = _DRAFT_SHAPES.get(draft.kind)
    given = (draft.body is not None, draft.target is not None, draft.emoji is not None)
    if shape != given or (draft.reply_to is not None and draft.kind is not EventKind.POST):
        raise ValueError(f"a {draft.kind} draft with the wrong body, target or emoji")


def check_limit(limit: int) -> None:
    # SQLite reads a negative LIMIT as "no limit"; every backend refuses it alike.
    if limit < 1:
        raise ValueError(f"limit must be positive, not {limit}")


def draft_key(sphere_id: SphereId, draft: Draft) -> Key:
    return (sphere_id, draft.author_id, draft.message_id)


def server_message_id() -> MessageId:
    """The idempotency key of an event the server writes itself (member and sphere events)."""
    return MessageId("~" + secrets.token_hex(_SERVER_KEY_HEX_CHARS // 2))


def member_event(
    sphere: SphereRecord,
    actor_id: UserId,
    target_id: UserId,
    target_name: str,
    change: MemberChange,
    now_ms: int,
) -> Message:
    """The ``member`` event of ``change``, at the offset after the sphere's current one."""
    return Message(
        sphere_id=sphere.sphere_id,
        offset=sphere.offset + 1,
        kind=EventKind.MEMBER,
        message_id=server_message_id(),
        author_id=actor_id,
        ts_ms=now_ms,
        member_id=target_id,
        member_name=target_name,
        role=change.role,
        action=change.action,
        until_ms=change.until_ms,
    )


def sphere_event(after: SphereRecord, actor_id: UserId, now_ms: int) -> Message:
    """The ``sphere`` event carrying every setting of ``after``, at ``after.offset``."""
    return Message(
        sphere_id=after.sphere_id,
        offset=after.offset,
        kind=EventKind.SPHERE,
        message_id=server_message_id(),
        author_id=actor_id,
        ts_ms=now_ms,
        privacy=after.privacy,
        listed=after.listed,
        join_policy=after.join_policy,
        history=after.history,
        charter_version=after.charter_version,
        name=after.name,
        retention_days=after.retention_days,
        legal_hold=public_hold(after.hold),
    )


def public_hold(hold: LegalHoldRecord | None) -> LegalHold | None:
    """A legal hold as members see it: when it began and ends, not why."""
    return None if hold is None else LegalHold(hold.since_ms, hold.until_ms)


def joined_from(history: HistoryMode, offset: int) -> int:
    """The first offset a newcomer whose ``member`` event is at ``offset`` may read."""
    return offset if history is HistoryMode.SINCE_JOINING else 0


def public_from_after(
    before: tuple[Privacy, HistoryMode, int], privacy: Privacy, history: HistoryMode, offset: int
) -> int:
    """The first offset an outsider may read after a change of type or history at ``offset``;
    ``before`` is the sphere's (privacy, history, public_from) until then.

    A sphere that becomes public, or a public sphere whose history is narrowed, shows outsiders
    only what follows the change; a sphere whose history is whole hides nothing from them.
    """
    was_privacy, was_history, was_public_from = before
    if history is HistoryMode.FULL:
        return 0
    was_open_to_outsiders = (
        was_privacy is Privacy.PUBLIC and was_history is HistoryMode.SINCE_JOINING
    )
    if privacy is Privacy.PUBLIC and not was_open_to_outsiders:
        return offset
    return was_public_from


def read_floor(privacy: Privacy, public_from: int, history_from: int | None) -> int:
    """The first offset a reader may read: a member from their ``history_from``, an outsider
    of a public sphere from ``public_from`` (a member of a public sphere reads what an outsider
    reads, too)."""
    if history_from is None:
        return public_from
    if privacy is Privacy.PUBLIC:
        return min(history_from, public_from)
    return history_from


def event_row(event: Message) -> tuple[Any, ...]:
    """A member or sphere event as an events row, in ``EVENT_COLUMNS`` order."""
    return (
        event.sphere_id,
        event.offset,
        event.kind.value,
        event.message_id,
        event.author_id or NO_AUTHOR,
        event.ts_ms,
        None,
        None,
        None,
        event.deleted,  # of a ``deleted`` member event: the account's posts are erased
        event.member_id,
        event.member_name,
        event.role.value if event.role is not None else None,
        event.action.value if event.action is not None else None,
        event.privacy.value if event.privacy is not None else None,
        None,
        None,
        None,
        False,
        event.name,
        None if event.listed is None else int(event.listed),
        event.join_policy.value if event.join_policy is not None else None,
        event.history.value if event.history is not None else None,
        event.charter_version,
        event.until_ms,
        event.retention_days,
        None if event.legal_hold is None else event.legal_hold.since_ms,
        None if event.legal_hold is None else event.legal_hold.until_ms,
    )


def to_message(row: Any) -> Message:
    """An event row, in ``EVENT_COLUMNS`` order."""
    (
        sphere_id,
        offset,
        kind,
        message_id,
        author_id,
        ts_ms,
        body,
        target,
        edited_ms,
        deleted,
        member_id,
        member_name,
        role,
        action,
        privacy,
        reply_to,
        emoji,
        mentions,
        pinned,
        sphere_name,
        listed,
        join_policy,
        history,
        charter_version,
        until_ms,
        retention_days,
        hold_since_ms,
        hold_until_ms,
    ) = row
    return Message(
        sphere_id=SphereId(sphere_id),
        offset=offset,
        kind=EventKind(kind),
        message_id=MessageId(message_id),
        author_id=UserId(author_id) if author_id != NO_AUTHOR else None,
        ts_ms=ts_ms,
        body=body,
        target=target,
        edited_ms=edited_ms,
        deleted=bool(deleted),
        member_id=UserId(member_id) if member_id is not None else None,
        member_name=member_name,
        role=Role(role) if role is not None else None,
        action=MemberAction(action) if action is not None else None,
        privacy=Privacy(privacy) if privacy is not None else None,
        reply_to=reply_to,
        emoji=emoji,
        mentions=read_mentions(mentions),
        pinned=bool(pinned),
        listed=bool(listed) if listed is not None else None,
        join_policy=JoinPolicy(join_policy) if join_policy is not None else None,
        history=HistoryMode(history) if history is not None else None,
        charter_version=charter_version,
        name=sphere_name,
        until_ms=until_ms,
        retention_days=retention_days,
        legal_hold=None if hold_since_ms is None else LegalHold(hold_since_ms, hold_until_ms),
    )


def mentions_column(mentions: list[UserId] | None) -> str | None:
    """The ``mentions`` column of a list of user ids (NULL: nobody)."""
    return json.dumps(mentions) if mentions else None


def read_mentions(column: str | None) -> list[UserId] | None:
    return [UserId(user_id) for user_id in json.loads(column)] if column else None


# The columns of a sphere row, in the order ``to_sphere`` reads them.
SPHERE_COLUMNS = (
    "sphere_id, name, privacy, epoch, last_offset, created_ms, listed, join_policy, "
    "history_mode, charter_version, public_from, retention_days, retained_from, hold_since_ms, "
    "hold_until_ms, hold_reason, hold_by, org_id"
)
SPHERE_WIDTH = len(SPHERE_COLUMNS.split(", "))


def sphere_select(alias: str = "") -> str:
    """``SPHERE_COLUMNS`` to read (columns prefixed by ``alias``): a charter whose text was
    cleared reads as version 0, none; the stored version keeps counting."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(
        f"CASE WHEN {prefix}charter_text IS NULL THEN 0 ELSE {prefix}charter_version END"
        if column == "charter_version"
        else prefix + column
        for column in SPHERE_COLUMNS.split(", ")
    )


def to_sphere(row: Any) -> SphereRecord:
    """A sphere row, as ``SPHERE_COLUMNS`` lists its columns."""
    (
        sphere_id,
        name,
        privacy,
        epoch,
        offset,
        created_ms,
        listed,
        join_policy,
        history,
        charter_version,
        public_from,
        retention_days,
        retained_from,
        hold_since_ms,
        hold_until_ms,
        hold_reason,
        hold_by,
        org_id,
    ) = row
    hold = (
        None
        if hold_since_ms is None
        else LegalHoldRecord(hold_since_ms, hold_until_ms, hold_reason or "", hold_by or "")
    )
    return SphereRecord(
        sphere_id,
        name,
        Privacy(privacy),
        epoch,
        offset,
        created_ms,
        listed=bool(listed),
        join_policy=JoinPolicy(join_policy),
        history=HistoryMode(history),
        charter_version=charter_version,
        public_from=public_from,
        retention_days=retention_days,
        retained_from=retained_from,
        hold=hold,
        org_id=org_id,
    )


def sphere_row(sphere: SphereRecord) -> tuple[object, ...]:
    """The values of ``SPHERE_COLUMNS`` for a new sphere's row (it has no legal hold)."""
    return (
        sphere.sphere_id,
        sphere.name,
        sphere.privacy.value,
        sphere.epoch,
        sphere.offset,
        sphere.created_ms,
        int(sphere.listed),
        sphere.join_policy.value,
        sphere.history.value,
        sphere.charter_version,
        sphere.public_from,
        sphere.retention_days,
        sphere.retained_from,
        None,  # no legal hold: hold_since_ms, hold_until_ms, hold_reason, hold_by
        None,
        None,
        None,
        sphere.org_id,
    )


def summary_of(sphere: SphereRecord) -> SphereSummary:
    """The sphere as anyone who sees it sees it (no role, marker nor floor)."""
    return SphereSummary(
        sphere_id=sphere.sphere_id,
        name=sphere.name,
        privacy=sphere.privacy,
        epoch=sphere.epoch,
        offset=sphere.offset,
        listed=sphere.listed,
        join_policy=sphere.join_policy,
        history=sphere.history,
        charter_version=sphere.charter_version,
        retention_days=sphere.retention_days,
        retained_from=sphere.retained_from,
        legal_hold=public_hold(sphere.hold),
    )


def settings_detail(settings: SphereSettings) -> str:
    """An audit detail naming the settings (never the name: only that there is one)."""
    return (
        f"privacy={settings.privacy.value},listed={str(settings.listed).lower()},"
        f"join_policy={settings.join_policy.value},history={settings.history.value}"
    )
