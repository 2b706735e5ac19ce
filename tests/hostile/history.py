"""A Jepsen-style history of one hostile run, and the checker that judges it.

Theory of operation: every write attempt is recorded with its outcome, and every delivery with
the reader that saw it. After the faults have healed, the test reads the sphere's final history
from the store (the sequencer, so the truth) and ``check`` compares the three:

- ``ok``: the server acked the write with an offset: it must be in the final history at that
  offset, and every reader that stayed subscribed (a *complete* reader) must have seen it;
- ``failed``: a definite error (``unavailable``, ``rate_limited``, ...): it must never appear,
  or the error was a lie;
- ``unknown``: a timeout, a connection lost before the ack, or the ``unknown`` error code: it
  may or may not appear, and if it does, complete readers must see it like any other.

The summary counts every try (a retry with the same ``message_id`` is a new attempt), so
``attempts = ok + failed + unknown``; ``settled_ok`` says how many distinct messages were acked
in the end. Counts, each of which must be 0 in a correct run:

- lost: an acked write missing from the final history, or from a complete reader;
- dup: a message delivered more than once to one reader;
- unexpected: a delivery to a reader that may not see the sphere, a failed write that is in the
  history, a message nobody wrote, or an ack whose offset the history contradicts;
- reordered: a delivery whose offset is not above the reader's previous one;
- gapped: an offset of the final history that a reader skipped between two it did see (or, for
  a complete reader, after its starting position).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum


class Outcome(StrEnum):
    OK = "ok"
    FAILED = "failed"
    UNKNOWN = "unknown"


# Error codes that say the outcome of a write is not known (the faults branch adds "unknown").
UNKNOWN_ERROR_CODES = frozenset({"unknown"})


@dataclass(slots=True)
class Attempt:
    message_id: str
    outcome: Outcome
    offset: int | None = None  # when ok
    detail: str = ""  # the error code, or what was lost


@dataclass(frozen=True, slots=True)
class Delivery:
    offset: int
    message_id: str


@dataclass(slots=True)
class ReaderLog:
    name: str
    allowed: bool = True  # may this reader see the sphere at all?
    complete: bool = True  # stayed subscribed (through resumes) from ``start_offset`` on
    start_offset: int = 0
    deliveries: list[Delivery] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Verdict:
    name: str
    attempts: int  # every try, retries included; ok + failed + unknown
    ok: int
    failed: int
    unknown: int
    messages: int  # distinct message ids written
    settled_ok: int  # of which acked in the end (after retries)
    lost: int
    dup: int
    unexpected: int
    reordered: int
    gapped: int
    problems: tuple[str, ...] = ()  # the first few, to explain a non-zero count
    elapsed_s: float | None = None  # how long the writes took, faults included

    @property
    def clean(self) -> bool:
        return not (self.lost or self.dup or self.unexpected or self.reordered or self.gapped)

    def summary(self) -> str:
        return (
            f"hostile {self.name}: attempts {self.attempts} ok {self.ok} failed {self.failed} "
            f"unknown {self.unknown} lost {self.lost} dup {self.dup} "
            f"unexpected {self.unexpected} reordered {self.reordered} gapped {self.gapped}"
            + (
                f" ({self.elapsed_s:.1f} s, {self.ok / self.elapsed_s:.0f} acks/s)"
                if self.elapsed_s
                else ""
            )
        )


MAX_PROBLEMS_SHOWN = 10  # enough to diagnose, short enough to read in a failure message


class History:
    """What one run did and saw. Not thread-safe: one event loop records into it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.attempts: dict[str, Attempt] = {}
        self.readers: dict[str, ReaderLog] = {}
        self.tries: Counter[Outcome] = Counter()  # every attempt, retries included
        self.lies: list[str] = []  # failures that a later duplicate ack contradicted
        # Ids with an attempt of unknown outcome: that attempt may be what stored them, so a
        # later definite failure (of a retry that wrote nothing) proves no lie.
        self._in_doubt: set[str] = set()

    def attempt(
        self,
        message_id: str,
        outcome: Outcome,
        *,
        offset: int | None = None,
        detail: str = "",
        duplicate: bool = False,
    ) -> None:
        """Record the outcome of one attempt to write ``message_id``.

        A retry's outcome replaces the previous one, except that ``unknown`` never replaces
        ``ok``. An ack marked ``duplicate`` right after a ``failed`` attempt proves the failure
        was a lie (the server had stored it): that counts as unexpected — unless an earlier
        attempt of the same id had an unknown outcome, which may be the one that stored it.
        """
        self.tries[outcome] += 1
        previous = self.attempts.get(message_id)
        if outcome is Outcome.UNKNOWN:
            self._in_doubt.add(message_id)
        if previous is not None:
            if outcome is Outcome.UNKNOWN and previous.outcome is Outcome.OK:
                return
            if (
                outcome is Outcome.OK
                and duplicate
                and previous.outcome is Outcome.FAILED
                and message_id not in self._in_doubt
            ):
                self.lies.append(f"{message_id} failed ({previous.detail}), stored @{offset}")
        self.attempts[message_id] = Attempt(message_id, outcome, offset, detail)

    def reader(self, name: str, *, allowed: bool = True, start_offset: int = 0) -> ReaderLog:
        log = ReaderLog(name, allowed=allowed, start_offset=start_offset)
        self.readers[name] = log
        return log

    def check(self, final: Iterable[Delivery], *, elapsed_s: float | None = None) -> Verdict:
        """Judge the run against ``final``, the sphere's history read after healing."""
        problems: list[str] = []
        by_offset: dict[int, str] = {}
        by_message: dict[str, int] = {}
        for entry in final:
            by_offset[entry.offset] = entry.message_id
            by_message[entry.message_id] = entry.offset
        counts = {"lost": 0, "dup": 0, "unexpected": 0, "reordered": 0, "gapped": 0}

        def flag(kind: str, text: str) -> None:
            counts[kind] += 1
            if len(problems) < MAX_PROBLEMS_SHOWN:
                problems.append(f"{kind}: {text}")

        for attempt in self.attempts.values():
            stored = by_message.get(attempt.message_id)
            if attempt.outcome is Outcome.OK:
                if stored is None:
                    flag("lost", f"acked {attempt.message_id}@{attempt.offset} not in history")
                elif stored != attempt.offset:
                    flag(
                        "unexpected",
                        f"acked {attempt.message_id}@{attempt.offset}, history has it @{stored}",
                    )
            elif (
                attempt.outcome is Outcome.FAILED
                and stored is not None
                and attempt.message_id not in self._in_doubt
            ):
                flag("unexpected", f"failed ({attempt.detail}) {attempt.message_id} is @{stored}")
        for lie in self.lies:
            flag("unexpected", lie)
        for message_id, offset in by_message.items():
            if message_id not in self.attempts:
                flag("unexpected", f"{message_id}@{offset} in history, never written")

        for log in self.readers.values():
            self._check_reader(log, by_offset, flag)
        return Verdict(
            self.name,
            attempts=sum(self.tries.values()),
            ok=self.tries[Outcome.OK],
            failed=self.tries[Outcome.FAILED],
            unknown=self.tries[Outcome.UNKNOWN],
            messages=len(self.attempts),
            settled_ok=sum(a.outcome is Outcome.OK for a in self.attempts.values()),
            problems=tuple(problems),
            elapsed_s=elapsed_s,
            **counts,
        )

    def _check_reader(
        self, log: ReaderLog, by_offset: dict[int, str], flag: Callable[[str, str], None]
    ) -> None:
        if not log.allowed:
            for delivery in log.deliveries:
                flag("unexpected", f"{log.name} (not allowed) got @{delivery.offset}")
            return
        seen: set[str] = set()
        last = log.start_offset if log.complete else None
        for delivery in log.deliveries:
            if delivery.message_id in seen:
                flag("dup", f"{log.name} got {delivery.message_id}@{delivery.offset} again")
                continue
            seen.add(delivery.message_id)
            if by_offset.get(delivery.offset) != delivery.message_id:
                flag(
                    "unexpected",
                    f"{log.name} got {delivery.message_id}@{delivery.offset}, "
                    f"history has {by_offset.get(delivery.offset)} there",
                )
            if last is not None and delivery.offset <= last:
                flag("reordered", f"{log.name} got @{delivery.offset} after @{last}")
                continue
            if last is not None:
                for skipped in range(last + 1, delivery.offset):
                    if skipped in by_offset:
                        flag("gapped", f"{log.name} skipped @{skipped}")
            last = delivery.offset
        if log.complete:
            end = max(by_offset, default=0)
            for offset in range(max(last or 0, log.start_offset) + 1, end + 1):
                message_id = by_offset.get(offset)
                if message_id is None:
                    continue
                attempt = self.attempts.get(message_id)
                kind = "lost" if attempt is not None and attempt.outcome is Outcome.OK else "gapped"
                flag(kind, f"{log.name} never got {message_id}@{offset}")
