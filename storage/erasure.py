"""Erasure that reaches the files: the part of the Store that removes erased bytes.

An erasure (a message deleted, with its edits; a sphere deleted; an account; expired
messages) is immediate at the SQL level: its rows are updated or deleted in the erasing
transaction. Each engine keeps old versions of rows in its files for a while after that;
``Erasure`` is how a caller makes them go. ``storage.sql.erasure`` says what each engine does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(slots=True)
class ErasureStats:
    """What the erasure machinery did since the store opened (for the metrics)."""

    scrub_pending: bool = False  # an erasure's old bytes may still be in the WAL
    scrubs: int = 0  # checkpoints that completed
    last_scrub_s: float = 0.0  # how long the last one took
    compactions: int = 0  # compactions that completed (PostgreSQL)
    last_compaction_s: float = 0.0
    skipped_tables: int = 0  # tables the last compaction left as they were


@dataclass(frozen=True, slots=True)
class CompactedTable:
    table: str
    seconds: float
    bytes_before: int
    bytes_after: int
    # Why nothing was rewritten: "locked" (its lock was held too long), "too long" (the
    # rewrite would have held appends up past the bound, and was cancelled), "readers"
    # (SQLite: readers held the write-ahead log); "" if rewritten.
    skipped: str = ""


@dataclass(frozen=True, slots=True)
class CompactionReport:
    """One compaction: each table rewritten (or skipped), and the whole duration."""

    tables: tuple[CompactedTable, ...]
    seconds: float

    @property
    def complete(self) -> bool:
        return not any(t.skipped for t in self.tables)


class Erasure(Protocol):
    async def scrub(self) -> None:
        """Remove from the files, as far as this engine can at once, the bytes of content
        that committed writes erased; call it after a batch that erased content.

        SQLite: checkpoints and truncates the write-ahead log (readers that hold it make the
        store retry in the background: ``erasure_stats.scrub_pending``). PostgreSQL: nothing
        at once; the bytes go at the next ``compact``. A message delete or edit and a sphere
        deletion scrub by themselves before they are acknowledged.
        """
        ...

    async def compact(self, *, max_stall_s: float | None = None) -> CompactionReport:
        """Rewrite the storage so that no erased byte is left in its files.

        SQLite: a scrub (pages are zeroed as they are freed), reported as one entry, the
        write-ahead log, skipped (``"readers"``) if readers kept it from completing.
        PostgreSQL: ``VACUUM (FULL)`` of every table of the store's schema, one at a time;
        each is locked while it is rewritten. With ``max_stall_s``, a table whose rewrite
        takes longer is left as it was (the rewrite is cancelled, so writes wait at most that
        long): see the report.

        Raises:
            StoreError: the database failed, or another process is compacting it.
        """
        ...

    @property
    def erasure_stats(self) -> ErasureStats:
        """Scrubs and compactions since the store opened."""
        ...
