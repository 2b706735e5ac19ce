"""How long a channel holds an early arrival before it reads the missing range from the store.

Across nodes, reordering is normal: a node delivers its own write N+1 right after its commit,
while another node's write N reaches it through the broker only after that node's commit
returns and the broker relays it. Under load that takes longer than a scheduler tick, so a
fixed short hold turns every such reorder into a store read. ``GapHold`` follows the observed
broker delay (from the event's store timestamp to its arrival here) the way TCP follows the
round-trip time: a smoothed mean plus four times the smoothed deviation, clamped to
[``GAP_HOLD_MIN_S``, ``GAP_HOLD_MAX_S``]. A frame really lost then costs at most the upper
bound in latency; a frame only late costs no store read.
"""

from __future__ import annotations

# Why: an out-of-order arrival on an idle node fills within a scheduler tick or two.
GAP_HOLD_MIN_S = 0.05
# Why: a lost frame must not delay the events after it for long; past this, read the store.
GAP_HOLD_MAX_S = 0.5
# Why: the usual smoothing gains (RFC 6298): recent enough to follow load, steady under noise.
MEAN_GAIN = 1 / 8
DEVIATION_GAIN = 1 / 4


class GapHold:
    """The hold before a gap repair, from the broker delays seen so far (O(1) per frame)."""

    __slots__ = ("_deviation_s", "_mean_s")

    def __init__(self) -> None:
        self._mean_s: float | None = None
        self._deviation_s = 0.0

    def observe(self, delay_s: float) -> None:
        """A broker frame arrived ``delay_s`` after the store sequenced it."""
        delay_s = min(max(delay_s, 0.0), GAP_HOLD_MAX_S)  # a skewed clock moves it no further
        if self._mean_s is None:
            self._mean_s, self._deviation_s = delay_s, delay_s / 2
            return
        error = delay_s - self._mean_s
        self._mean_s += MEAN_GAIN * error
        self._deviation_s += DEVIATION_GAIN * (abs(error) - self._deviation_s)

    @property
    def seconds(self) -> float:
        if self._mean_s is None:
            return GAP_HOLD_MIN_S
        return min(GAP_HOLD_MAX_S, max(GAP_HOLD_MIN_S, self._mean_s + 4 * self._deviation_s))
