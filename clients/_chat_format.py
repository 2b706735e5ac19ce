"""How ``cloison chat`` writes events, settings and governance records as one line each.

Every function takes ``name``, which turns a user id into a printable name, and returns text
already passed through ``clean``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping

from clients._terminal import clean
from protocol import (
    AuditRecord,
    EventKind,
    MemberAction,
    Message,
    ReactionCount,
    Role,
    SphereSummary,
    UserId,
)

Namer = Callable[[UserId], str]
# Who wrote what a deleted account left (an event without author).
DELETED_USER = "deleted user"

# A body names a member as ``<@user_id>``; people type ``@name``.
_MENTION = re.compile(r"<@([A-Za-z0-9_-]{1,64})>")
_TYPED_MENTION = re.compile(r"(?<!\S)@([^\s@<>]{1,100})")


def shown(body: str, name: Namer) -> str:
    """``body`` for the screen: each ``<@user_id>`` as ``@name``, control characters gone."""
    return clean(_MENTION.sub(lambda m: f"@{name(UserId(m.group(1)))}", body))


def with_mentions(text: str, names: Mapping[UserId, str]) -> str:
    """What the user typed, with ``@name`` of a known user written as ``<@user_id>``."""
    by_name = {n.casefold(): user_id for user_id, n in names.items()}

    def mention(found: re.Match[str]) -> str:
        user_id = by_name.get(found.group(1).casefold())
        return f"<@{user_id}>" if user_id else found.group(0)

    return _TYPED_MENTION.sub(mention, text)


def clock(ts_ms: int) -> str:
    return time.strftime("%H:%M", time.localtime(ts_ms / 1000))


def stamp(ts_ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts_ms / 1000))


def reactions(counts: list[ReactionCount] | None) -> str:
    """`` [👍 2, 🎉 1]``, or nothing when the post has no reaction."""
    if not counts:
        return ""
    return " [" + ", ".join(f"{clean(c.emoji)} {c.count}" for c in counts) + "]"


def author(message: Message, name: Namer) -> str:
    """The event's author by name, or ``DELETED_USER`` for an event without one."""
    return name(message.author_id) if message.author_id is not None else DELETED_USER


def membership(message: Message, name: Namer) -> str:
    """A member event in words: who did what to whom."""
    who = author(message, name)
    member = clean(message.member_name or message.member_id or "someone")
    role = message.role
    action = message.action
    if action is MemberAction.JOINED:
        return f"{member} joined" + (" as owner" if role is Role.OWNER else "")
    if action is MemberAction.LEFT:
        return f"{member} left"
    if action is MemberAction.ADDED:
        return f"{who} added {member}" + (f" as {role}" if role is not Role.MEMBER else "")
    if action is MemberAction.REMOVED:
        return f"{who} removed {member}"
    if action is MemberAction.ACCEPTED:
        return f"{member} accepted an invitation" + (f" as {role}" if role else "")
    if action is MemberAction.ADMITTED:
        return f"{who} admitted {member}"
    if action is MemberAction.BANNED:
        return f"{who} banned {member}"
    if action is MemberAction.UNBANNED:
        return f"{who} lifted the ban on {member}"
    if action is MemberAction.MUTED:
        until = f" until {stamp(message.until_ms)}" if message.until_ms else ""
        return f"{who} muted {member}{until}"
    if action is MemberAction.UNMUTED:
        return f"{who} unmuted {member}"
    if action is MemberAction.DELETED:
        return f"the account of {member} was deleted"
    if action is MemberAction.APPOINTED:
        return f"{member} became an administrator as a manager of the organisation"
    return f"{who} made {member} {role}"


def settings(sphere: SphereSummary | Message) -> str:
    """A sphere's settings: ``open, listed, join: approval, history: full, charter v2``."""
    parts = [str(sphere.privacy), "listed" if sphere.listed else "unlisted"]
    if sphere.join_policy is not None:
        parts.append(f"join: {sphere.join_policy}")
    if sphere.history is not None:
        parts.append(f"history: {sphere.history}")
    if sphere.charter_version:
        parts.append(f"charter v{sphere.charter_version}")
    return ", ".join(parts)


def event(message: Message, name: Namer) -> str:
    """``#OFFSET HH:MM name: text`` for a post, ``#OFFSET HH:MM * ...`` for the rest."""
    when = clock(message.ts_ms)
    who = author(message, name)
    head = f"#{message.offset} {when} {who}"
    notice = f"#{message.offset} {when} *"
    kind = message.kind
    if kind is EventKind.EDIT:
        return f"{head} edited #{message.target}: {shown(message.body or '', name)}"
    if kind is EventKind.DELETE:
        return f"{head} deleted #{message.target}"
    if kind is EventKind.MEMBER:
        return f"{notice} {membership(message, name)}"
    if kind is EventKind.SPHERE:
        return f"{notice} {who} changed the sphere: {settings(message)}"
    if kind is EventKind.REACT:
        return f"{notice} {who} reacted {clean(message.emoji or '')} to #{message.target}"
    if kind is EventKind.UNREACT:
        return f"{notice} {who} withdrew {clean(message.emoji or '')} from #{message.target}"
    if kind is EventKind.PIN:
        return f"{notice} {who} pinned #{message.target}"
    if kind is EventKind.UNPIN:
        return f"{notice} {who} unpinned #{message.target}"
    if kind is not EventKind.POST:
        return f"{notice} ({kind})"  # a kind from a newer server
    answer = f" (re #{message.reply_to})" if message.reply_to else ""
    if message.deleted:
        return f"{head}{answer}: (deleted)"
    edited = " (edited)" if message.edited_ms else ""
    pinned = " (pinned)" if message.pinned else ""
    body = shown(message.body or "", name).replace("\n", "\n    ")
    return f"{head}{answer}: {body}{edited}{pinned}{reactions(message.reactions)}"


def audit(entry: AuditRecord, name: Namer) -> str:
    """One audit entry: when, who, what, to whom (never a message body)."""
    target = f" {name(entry.target_id)}" if entry.target_id else ""
    post = f" #{entry.offset}" if entry.offset is not None else ""
    detail = f" ({clean(entry.detail)})" if entry.detail else ""
    return f"  {stamp(entry.ts_ms)} {name(entry.actor_id)} {entry.action}{target}{post}{detail}"
