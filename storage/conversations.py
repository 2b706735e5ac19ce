"""Conversations: what the store keeps of replies, reactions, pins, mentions and reports.

Replies, reactions and pins are events of the sphere's stream (``Draft.reply_to``,
``EventKind.REACT``/``UNREACT``/``PIN``/``UNPIN``); the group commit that appends them also
writes the state they build (a post's reactions, whether it is pinned, its thread's summary,
whom it mentions), so every read below is of current state, never a replay.

Every read is made for a *reader*, and shows only posts at or above the reader's floor: the
first offset they may read of the sphere (``members.history_from`` for a member,
``spheres.public_from`` for an outsider of a public sphere).

Mentions are written ``<@user_id>`` in a post's body. The store resolves them when the post (or
an edit of it) is sequenced, keeping the users who are members of the sphere then and may read
the post; a client never supplies them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from protocol import Message, ReportReason, SphereId, UserId

# ``<@user_id>``: a user id is what the server issues (letters, digits, ``_`` and ``-``).
MENTION = re.compile(r"<@([A-Za-z0-9_-]{1,64})>")
# Why: a post that names more people than this is a broadcast, not a mention.
MAX_MENTIONS = 50

# Where a page of mentions ends, newest first: (ts_ms, sphere_id, offset) of its last post.
MentionKey = tuple[int, str, int]


def mention_candidates(body: str) -> list[UserId]:
    """The user ids ``body`` mentions, in order of first appearance, at most MAX_MENTIONS."""
    found = dict.fromkeys(UserId(match) for match in MENTION.findall(body))
    return list(found)[:MAX_MENTIONS]


@dataclass(frozen=True, slots=True)
class ThreadRecord:
    """A post that has replies: how many (tombstones included), and the latest."""

    root: Message
    replies: int
    last_offset: int
    last_ts_ms: int


@dataclass(frozen=True, slots=True)
class ReportRecord:
    report_id: int
    sphere_id: SphereId
    target: int
    reporter_id: UserId
    reason: ReportReason
    ts_ms: int
    comment: str | None = None


class Conversations(Protocol):
    async def list_pins(
        self, sphere_id: SphereId, reader: UserId, *, limit: int
    ) -> tuple[list[Message], bool]:
        """The sphere's pinned posts the reader may read, ascending by offset: the newest
        ``limit`` of them, and whether older ones were left out."""
        ...

    async def get_thread(
        self, sphere_id: SphereId, root: int, reader: UserId, *, after: int, limit: int
    ) -> tuple[Message, list[Message], bool] | None:
        """A thread: its first post, its replies above offset ``after`` (the oldest ``limit``,
        ascending) and whether more follow. ``root`` may name any post of the thread.

        Returns None when ``root`` is not a post the reader may read.
        """
        ...

    async def list_threads(
        self, sphere_id: SphereId, reader: UserId, *, before: int | None, limit: int
    ) -> list[ThreadRecord]:
        """Posts with replies that the reader may read, the latest answered first; with
        ``before``, those whose latest reply is older than that offset."""
        ...

    async def list_mentions(
        self, user_id: UserId, *, after: MentionKey | None, limit: int
    ) -> list[Message]:
        """Live posts mentioning ``user_id`` in the spheres they are a member of now, at or
        above their floor there, newest first (by ts_ms, then sphere and offset), after
        ``after`` (the ``MentionKey`` of the last one already seen)."""
        ...

    async def add_report(
        self,
        sphere_id: SphereId,
        target: int,
        reporter_id: UserId,
        reason: ReportReason,
        comment: str | None,
        *,
        now_ms: int,
    ) -> tuple[ReportRecord, bool]:
        """Report the post at ``target``, with its ``post_reported`` audit entry, in one
        transaction. A reporter reports a post once: a second report returns the first.

        Returns:
            The report, and whether it is new.

        Raises:
            TargetGoneError: ``target`` is not a live post the reporter may read.
        """
        ...

    async def list_reports(
        self, sphere_id: SphereId, *, before: int | None, limit: int
    ) -> list[ReportRecord]:
        """The sphere's reports with report_id < ``before`` (None: the newest), newest first."""
        ...
