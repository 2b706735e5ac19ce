"""The bookkeeping behind honest gap-repair metrics: store-supplied runs and the gap hold."""

from __future__ import annotations

from server.channel import STORE_SUPPLIED_RUNS_MAX, StoreSupplied
from server.gap_hold import GAP_HOLD_MAX_S, GAP_HOLD_MIN_S, GapHold


def test_a_live_copy_claims_a_store_supplied_offset_once() -> None:
    supplied = StoreSupplied()
    for offset in (5, 6, 7, 10, 11):
        supplied.add(offset)
    assert supplied.runs == [[5, 7], [10, 11]]
    assert supplied.claim(6)  # the middle of a run: split
    assert supplied.runs == [[5, 5], [7, 7], [10, 11]]
    assert not supplied.claim(6)  # a second copy is not a second unneeded repair
    assert supplied.claim(10) and supplied.claim(11) and supplied.claim(5) and supplied.claim(7)
    assert supplied.runs == []
    assert not supplied.claim(4) and not supplied.claim(12)


def test_store_supplied_runs_are_bounded() -> None:
    supplied = StoreSupplied()
    for run in range(STORE_SUPPLIED_RUNS_MAX + 10):
        supplied.add(run * 10)  # one run each
    assert len(supplied.runs) == STORE_SUPPLIED_RUNS_MAX
    assert not supplied.claim(0)  # the oldest runs were forgotten
    assert supplied.claim((STORE_SUPPLIED_RUNS_MAX + 9) * 10)
    for offset in range(1000, 1000 + 4 * STORE_SUPPLIED_RUNS_MAX, 2):
        supplied.add(offset)
        supplied.add(offset + 1)
        assert supplied.claim(offset)
    assert len(supplied.runs) <= STORE_SUPPLIED_RUNS_MAX


def test_the_gap_hold_follows_the_broker_delay_within_its_bounds() -> None:
    hold = GapHold()
    assert hold.seconds == GAP_HOLD_MIN_S  # nothing observed yet
    for _ in range(50):
        hold.observe(0.001)
    assert hold.seconds == GAP_HOLD_MIN_S  # a fast broker: the floor
    for _ in range(50):
        hold.observe(0.08)
    assert GAP_HOLD_MIN_S < hold.seconds < GAP_HOLD_MAX_S  # a loaded one: a little above it
    for _ in range(50):
        hold.observe(30.0)  # a skewed clock or a stuck node: never beyond the ceiling
    assert hold.seconds == GAP_HOLD_MAX_S
    hold.observe(-5.0)  # a clock behind the store's
    assert hold.seconds <= GAP_HOLD_MAX_S
