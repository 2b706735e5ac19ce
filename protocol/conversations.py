"""Frames of conversations: reactions, pins, threads of replies and mentions.

Reactions and pins are events of the sphere's stream, written like posts (idempotent on
``message_id``, acknowledged with ``ack``); replies are posts with ``reply_to``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from protocol.fields import (
    MAX_CURSOR_CHARS,
    MAX_HISTORY_LIMIT,
    MAX_ID_CHARS,
    MAX_LIST_LIMIT,
    MAX_OFFSET,
    Frame,
    _int,
    _opt_int,
    _opt_text,
    _ref,
    _text,
)
from protocol.message import Message
from protocol.types import MessageId, SphereId

# Why: one emoji, a short-code (":thumbsup:") or a ZWJ sequence fits; a sentence does not.
MAX_EMOJI_CHARS = 32


@dataclass(frozen=True, slots=True)
class React(Frame):
    TYPE: ClassVar[str] = "react"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    message_id: MessageId = _text(MAX_ID_CHARS)
    target: int = _int(1, MAX_OFFSET)
    emoji: str = _text(MAX_EMOJI_CHARS)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class Unreact(Frame):
    TYPE: ClassVar[str] = "unreact"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    message_id: MessageId = _text(MAX_ID_CHARS)
    target: int = _int(1, MAX_OFFSET)
    emoji: str = _text(MAX_EMOJI_CHARS)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class Pin(Frame):
    TYPE: ClassVar[str] = "pin"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    message_id: MessageId = _text(MAX_ID_CHARS)
    target: int = _int(1, MAX_OFFSET)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class Unpin(Frame):
    TYPE: ClassVar[str] = "unpin"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    message_id: MessageId = _text(MAX_ID_CHARS)
    target: int = _int(1, MAX_OFFSET)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class ListPins(Frame):
    """The sphere's pinned posts (answered with ``history_page``, ascending)."""

    TYPE: ClassVar[str] = "list_pins"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class GetThread(Frame):
    """A post and its replies in stream order, the oldest after ``after``."""

    TYPE: ClassVar[str] = "get_thread"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    root: int = _int(1, MAX_OFFSET)
    after: int | None = _opt_int(0, MAX_OFFSET)
    limit: int | None = _opt_int(1, MAX_HISTORY_LIMIT)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class ListThreads(Frame):
    """The sphere's posts that have replies, the most recently answered first."""

    TYPE: ClassVar[str] = "list_threads"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    limit: int | None = _opt_int(1, MAX_LIST_LIMIT)
    after: str | None = _opt_text(MAX_CURSOR_CHARS)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class ListMentions(Frame):
    """Posts that mention the caller, across the spheres they may read, newest first."""

    TYPE: ClassVar[str] = "list_mentions"
    limit: int | None = _opt_int(1, MAX_LIST_LIMIT)
    after: str | None = _opt_text(MAX_CURSOR_CHARS)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class ThreadPage(Frame):
    TYPE: ClassVar[str] = "thread_page"
    sphere_id: SphereId
    root: Message
    replies: list[Message]  # ascending by offset
    has_more: bool
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class ThreadSummary:
    root: Message
    replies: int
    last_offset: int  # the offset of its latest reply
    last_ts_ms: int


@dataclass(frozen=True, slots=True)
class ThreadList(Frame):
    TYPE: ClassVar[str] = "thread_list"
    sphere_id: SphereId
    threads: list[ThreadSummary]
    next: str | None = None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class MentionList(Frame):
    TYPE: ClassVar[str] = "mention_list"
    messages: list[Message]  # newest first, from any of the caller's spheres
    next: str | None = None
    ref: str | None = None
