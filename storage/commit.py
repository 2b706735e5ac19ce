"""What a failed group commit means, shared by the SQL backends.

A group that fails before its COMMIT is sent is rolled back: every draft fails with
``StoreError`` (code ``unavailable``: certainly not written). A group whose COMMIT was sent
but not answered (the connection broke or timed out, the backend was terminated, the disk
failed under the write-ahead log) may or may not be stored: its new drafts fail with
``OutcomeUnknownError`` (code ``unknown``), and a retry with the same message_id tells which.

``FailureLog`` logs a streak of failed groups once when it starts and once when it ends,
with the exception class, rather than a traceback per group: a full disk or a lost database
fails every group, and the log must not grow with the write rate.
"""

from __future__ import annotations

import logging

from storage.base import AppendResult, OutcomeUnknownError, StoreError
from storage.rows import Outcome


class CommitInDoubtError(Exception):
    """COMMIT was sent but its answer never came: the group may or may not be stored.

    ``outcomes`` are the group's outcomes had it committed.
    """

    def __init__(self, outcomes: list[Outcome], cause: BaseException) -> None:
        super().__init__(f"commit in doubt: {type(cause).__name__}: {cause}")
        self.outcomes = outcomes
        self.cause = cause


def in_doubt(outcomes: list[Outcome], cause: BaseException) -> list[Outcome]:
    """The outcomes of a group whose commit is in doubt.

    A new event may be stored or not: ``OutcomeUnknownError``. A duplicate was stored before
    this group, and a domain error wrote nothing, whatever became of the commit: both stand.
    """
    settled: list[Outcome] = []
    for outcome in outcomes:
        if isinstance(outcome, AppendResult) and not outcome.duplicate:
            unknown = OutcomeUnknownError()
            unknown.__cause__ = cause
            settled.append(unknown)
        else:
            settled.append(outcome)
    return settled


def rolled_back(count: int, cause: BaseException) -> list[Outcome]:
    """``count`` failures of a group that was rolled back: nothing was written."""
    failures: list[Outcome] = []
    for _ in range(count):
        failure = StoreError("the database failed; nothing was written")
        failure.__cause__ = cause
        failures.append(failure)
    return failures


class FailureLog:
    """Counts failed groups and logs each streak of them once, at its start and its end."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self.failed_groups = 0  # since the store opened
        self.unknown_groups = 0  # of which the outcome is unknown
        self._streak = 0

    def failed(self, drafts: int, cause: BaseException, *, unknown: bool = False) -> None:
        self.failed_groups += 1
        self.unknown_groups += unknown
        if self._streak == 0:
            self._log.error(
                "group commits are failing (%s: %s); %s",
                type(cause).__name__,
                cause,
                "outcome unknown" if unknown else "rolled back",
            )
        self._streak += 1
        self._log.debug("a group of %d appends failed", drafts, exc_info=cause)

    def succeeded(self) -> None:
        if self._streak:
            self._log.warning("group commits succeed again after %d failed groups", self._streak)
            self._streak = 0
