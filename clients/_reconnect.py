"""Reconnect and resume, without I/O: when to reconnect, how long to wait, what to deliver.

Theory of operation: the client keeps one ``Cursor`` per subscribed sphere, holding the
position of the last message it handed to the application. Every incoming ``message`` is
classified against it:

- at or below the cursor: a duplicate from an overlapping resume, dropped;
- exactly one above: delivered, and the cursor moves;
- further above, or while the sphere is lagging: a gap, dropped; the sphere is resubscribed
  with ``since`` set to the cursor, and the server replays what was dropped.

The same resubscription runs for every sphere after a reconnect, so whatever happened on the
wire, the application sees each offset once and in order. ``Backoff`` spaces reconnects with
full jitter and ``should_reconnect`` reads the close-code table of the protocol.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum

from protocol import CloseCode, SphereId, StreamPosition

# Why: a close without a close frame (crash, network loss) reads as 1006; the protocol says to
# reconnect as after 1012.
ABNORMAL_CLOSURE = 1006
# Why: codes outside the protocol's table may mean a broken proxy or client; retrying forever
# would hide that, so give up after this many in a row (docs/protocol.md section 16).
MAX_UNLISTED_CLOSES = 5


def should_reconnect(close_code: int | None) -> bool:
    """Whether a connection that ended with ``close_code`` should be reconnected.

    Args:
        close_code: The WebSocket close code, or None when the connection never opened or
            dropped without a close frame.

    Returns:
        True for codes whose "Reconnect" is yes in the protocol's table, for drops, and for
        unlisted codes below 4000; False for terminal codes (4500-4999, 1000, 1002, 1009).
    """
    if close_code is None or close_code == ABNORMAL_CLOSURE:
        return True
    try:
        return CloseCode(close_code).reconnect
    except ValueError:
        return close_code < 4500


def is_listed(close_code: int | None) -> bool:
    """Whether the protocol's close-code table names ``close_code`` (drops count as listed)."""
    if close_code is None or close_code == ABNORMAL_CLOSURE:
        return True
    return close_code in CloseCode._value2member_map_ or 4000 <= close_code < 5000


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter: a uniform delay in ``[0, min(cap, base * 2^n)]``.

    Full jitter spreads the reconnects of many clients cut off at once (a server restart)
    over the whole window instead of sending them back in synchronised waves.
    """

    base_s: float = 0.5
    cap_s: float = 30.0
    # A connection that stayed up this long resets the attempt counter.
    reset_after_s: float = 60.0

    def delay_s(self, attempt: int, rng: random.Random | None = None) -> float:
        """The delay before reconnect attempt ``attempt`` (0 for the first retry).

        Args:
            attempt: How many attempts failed in a row before this one.
            rng: The source of randomness; the module's shared generator when None.

        Returns:
            A delay in seconds, at most ``cap_s``.
        """
        ceiling = min(self.cap_s, self.base_s * 2 ** min(attempt, 32))
        return (rng or random).uniform(0.0, ceiling)


class Verdict(Enum):
    DELIVER = "deliver"  # the next offset: hand it to the application
    DUPLICATE = "duplicate"  # already delivered: drop
    GAP = "gap"  # ahead of the next offset, or the sphere is catching up: drop and resync
    UNPOSITIONED = "unpositioned"  # waiting for the reply that tells where the stream starts


@dataclass(slots=True)
class Cursor:
    """What the client knows about one subscribed sphere.

    ``position`` is the last message delivered to the application. A subscribe without
    ``since`` leaves it unknown (``fresh``) until its ``subscribed`` reply names the start.
    """

    sphere_id: SphereId
    position: StreamPosition | None = None
    subscribe_ref: str | None = None  # the subscribe in flight whose reply updates this cursor
    fresh: bool = False  # that subscribe has no ``since``: its reply sets ``position``
    lagging: bool = False  # messages were dropped; a resubscribe from ``position`` is due
    lost: StreamPosition | None = None  # refused by the server; reported once re-subscribed

    def classify(self, offset: int) -> Verdict:
        """Where a message with ``offset`` stands relative to what was delivered."""
        if self.position is None:
            return Verdict.UNPOSITIONED
        if offset <= self.position.offset:
            return Verdict.DUPLICATE
        if self.lagging or offset != self.position.offset + 1:
            return Verdict.GAP
        return Verdict.DELIVER

    def advance(self, offset: int) -> None:
        """Record that the message at ``offset`` (the next one) reached the application."""
        assert self.position is not None
        assert offset == self.position.offset + 1
        self.position = StreamPosition(offset, self.position.epoch)
