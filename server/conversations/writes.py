"""Reactions and pins: events of the sphere's stream, drafted here, committed by the
dispatcher like posts (idempotent on ``message_id``, acknowledged with ``ack``)."""

from __future__ import annotations

import unicodedata

from protocol import CloisonError, ErrorCode, EventKind, Frame, Pin, React, Unpin, Unreact
from server.access import Granted
from server.operations.context import Caller, PreparedWrite, WriteHandler
from server.operations.messages import draft_of


def check_emoji(emoji: str) -> None:
    """An emoji is one symbol or short-code: no spaces, no control characters."""
    if any(c.isspace() or unicodedata.category(c) == "Cc" for c in emoji):
        raise CloisonError("emoji: no spaces or control characters", code=ErrorCode.BAD_FRAME)


class ConversationWrites:
    def writes(self) -> dict[type[Frame], WriteHandler]:
        return {
            React: self._react,
            Unreact: self._unreact,
            Pin: self._pin,
            Unpin: self._unpin,
        }

    async def _react(self, caller: Caller, frame: React, grant: Granted) -> PreparedWrite:
        check_emoji(frame.emoji)
        return draft_of(caller, frame, EventKind.REACT, target=frame.target, emoji=frame.emoji)

    async def _unreact(self, caller: Caller, frame: Unreact, grant: Granted) -> PreparedWrite:
        check_emoji(frame.emoji)
        return draft_of(caller, frame, EventKind.UNREACT, target=frame.target, emoji=frame.emoji)

    async def _pin(self, caller: Caller, frame: Pin, grant: Granted) -> PreparedWrite:
        return draft_of(caller, frame, EventKind.PIN, target=frame.target)

    async def _unpin(self, caller: Caller, frame: Unpin, grant: Granted) -> PreparedWrite:
        return draft_of(caller, frame, EventKind.UNPIN, target=frame.target)
