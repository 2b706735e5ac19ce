"""The server side of a connection's state machine, as a transition table.

Theory of operation: a connection starts in ``AWAITING_AUTH``, where the only frame allowed is
``auth``; a valid token moves it to ``READY``, where every other client frame is allowed and
``auth`` is not. ``CLOSED`` accepts nothing. The gateway asks ``accept`` before it acts on a
frame and reports each state change through ``authenticated`` and ``closed``.
"""

from __future__ import annotations

from enum import Enum

from protocol.catalog import CLIENT_FRAMES
from protocol.errors import ErrorCode, ProtocolViolation
from protocol.fields import Frame
from protocol.frames import Auth


class SessionState(Enum):
    AWAITING_AUTH = "awaiting_auth"
    READY = "ready"
    CLOSED = "closed"


# Which client frame types each state accepts.
TRANSITIONS: dict[SessionState, frozenset[type[Frame]]] = {
    SessionState.AWAITING_AUTH: frozenset({Auth}),
    SessionState.READY: frozenset(set(CLIENT_FRAMES) - {Auth}),
    SessionState.CLOSED: frozenset(),
}


class ServerSession:
    """Tracks what a connection may send next."""

    def __init__(self) -> None:
        self.state = SessionState.AWAITING_AUTH

    def accept(self, frame: Frame) -> None:
        """Raise ``ProtocolViolation`` unless ``frame`` is allowed in the current state."""
        if type(frame) in TRANSITIONS[self.state]:
            return
        if self.state is SessionState.AWAITING_AUTH:
            raise ProtocolViolation("the first frame must be auth", code=ErrorCode.UNAUTHORIZED)
        if self.state is SessionState.CLOSED:
            raise ProtocolViolation("the session is closed")
        raise ProtocolViolation(f"{frame.TYPE} is not allowed now")

    def authenticated(self) -> None:
        if self.state is not SessionState.AWAITING_AUTH:
            raise ProtocolViolation("already authenticated")
        self.state = SessionState.READY

    def closed(self) -> None:
        self.state = SessionState.CLOSED
