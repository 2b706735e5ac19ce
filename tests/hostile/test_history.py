"""The checker itself: each count fires on the fault it names, and a clean run counts none."""

from __future__ import annotations

from tests.hostile.history import Delivery, History, Outcome, Verdict


def written(*offsets: int) -> tuple[History, list[Delivery]]:
    """A history where m<offset> was acked at each offset, and the final history to match."""
    history = History("t")
    for offset in offsets:
        history.attempt(f"m{offset}", Outcome.OK, offset=offset)
    return history, [Delivery(offset, f"m{offset}") for offset in offsets]


def saw(history: History, name: str, *offsets: int, allowed: bool = True) -> None:
    log = history.reader(name, allowed=allowed)
    log.deliveries += [Delivery(offset, f"m{offset}") for offset in offsets]


def counts(verdict: Verdict) -> tuple[int, int, int, int, int]:
    return (verdict.lost, verdict.dup, verdict.unexpected, verdict.reordered, verdict.gapped)


def test_a_clean_run_counts_nothing() -> None:
    history, final = written(1, 2, 3)
    saw(history, "r", 1, 2, 3)
    saw(history, "outsider", allowed=False)
    verdict = history.check(final)
    assert verdict.clean and counts(verdict) == (0, 0, 0, 0, 0)
    assert verdict.summary() == (
        "hostile t: attempts 3 ok 3 failed 0 unknown 0 lost 0 dup 0 unexpected 0 "
        "reordered 0 gapped 0"
    )


def test_an_acked_write_missing_from_the_store_is_lost() -> None:
    history, final = written(1, 2, 3)
    saw(history, "r", 1, 2)
    assert counts(history.check(final[:2])) == (1, 0, 0, 0, 0)


def test_an_acked_write_a_complete_reader_never_got_is_lost() -> None:
    history, final = written(1, 2, 3)
    saw(history, "r", 1, 2)
    assert counts(history.check(final)) == (1, 0, 0, 0, 0)


def test_a_skipped_offset_between_two_deliveries_is_a_gap() -> None:
    history, final = written(1, 2, 3)
    saw(history, "r", 1, 3)
    assert counts(history.check(final)) == (0, 0, 0, 0, 1)


def test_a_second_delivery_is_a_duplicate_and_going_back_is_a_reorder() -> None:
    history, final = written(1, 2, 3)
    saw(history, "dup", 1, 2, 2, 3)
    saw(history, "back", 2, 1, 3)
    verdict = history.check(final)
    assert verdict.dup == 1 and verdict.reordered == 1


def test_a_delivery_to_an_outsider_is_unexpected() -> None:
    history, final = written(1)
    saw(history, "outsider", 1, allowed=False)
    assert counts(history.check(final)) == (0, 0, 1, 0, 0)


def test_a_failed_write_in_the_store_is_a_lie() -> None:
    history, final = written(1)
    history.attempt("m2", Outcome.FAILED, detail="unavailable")
    assert counts(history.check([*final, Delivery(2, "m2")])) == (0, 0, 1, 0, 0)


def test_a_duplicate_ack_right_after_a_failure_is_a_lie() -> None:
    history = History("t")
    history.attempt("m1", Outcome.FAILED, detail="unavailable")
    history.attempt("m1", Outcome.OK, offset=1, duplicate=True)
    verdict = history.check([Delivery(1, "m1")])
    assert verdict.unexpected == 1 and (verdict.attempts, verdict.failed) == (2, 1)


def test_a_duplicate_ack_after_an_unknown_is_no_lie() -> None:
    history = History("t")
    history.attempt("m1", Outcome.FAILED, detail="unavailable")
    history.attempt("m1", Outcome.UNKNOWN, detail="WireLost")
    history.attempt("m1", Outcome.OK, offset=1, duplicate=True)
    assert history.check([Delivery(1, "m1")]).clean


def test_a_failure_after_an_unknown_attempt_is_no_lie() -> None:
    """The unknown attempt stored it; the retry that failed wrote nothing, truthfully."""
    history = History("t")
    history.attempt("m1", Outcome.UNKNOWN, detail="unknown")
    history.attempt("m1", Outcome.FAILED, detail="unavailable")
    assert history.check([Delivery(1, "m1")]).clean  # it may have stayed at that
    history.attempt("m1", Outcome.OK, offset=1, duplicate=True)
    assert history.check([Delivery(1, "m1")]).clean


def test_an_unknown_write_may_be_stored_or_not_but_readers_must_see_it_if_it_is() -> None:
    history, final = written(1)
    history.attempt("m2", Outcome.UNKNOWN, detail="TimeoutError")
    saw(history, "r", 1)
    assert history.check(final).clean  # not stored: fine
    assert history.check([*final, Delivery(2, "m2")]).gapped == 1  # stored, not delivered


def test_an_ack_the_store_contradicts_and_a_message_nobody_wrote_are_unexpected() -> None:
    history, _ = written(1)
    verdict = history.check([Delivery(2, "m1"), Delivery(3, "ghost")])
    assert verdict.unexpected == 2


def test_a_reader_starts_at_its_subscribe_position() -> None:
    history, final = written(1, 2, 3)
    log = history.reader("late")
    log.start_offset = 2
    log.deliveries.append(Delivery(3, "m3"))
    assert history.check(final).clean
