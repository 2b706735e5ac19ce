"""What differs between the SQL of SQLite and of PostgreSQL, as data: one source per statement.

A shared statement is written once, with ``?`` placeholders and ``{name}`` slots for the few
fragments that differ (see ``Dialect``); ``Dialect.render`` fills the slots and, for
PostgreSQL, numbers the placeholders ``$1``, ``$2``, ... Statements are rendered once, when a
backend's class builds its ``storage.sql.queries.Queries``, never per call.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_PLACEHOLDER = re.compile(r"\?")


@dataclass(frozen=True, slots=True)
class Dialect:
    """The fragments in which the engines' SQL differs, and how a list is passed."""

    name: str
    numbered: bool  # $1, $2, ... placeholders instead of ?
    # Appended to a SELECT of a sphere row that decides a change: the lock that orders the
    # change with the sphere's appends (SQLite's one writer orders them already).
    lock_sphere: str
    # Names sort by code point whatever the database's locale (SQLite's BINARY already does).
    collate: str
    false: str  # the false literal of a boolean column
    greatest: str  # the scalar maximum / minimum of two values
    least: str
    creation_order: str  # a column that breaks ties of created_ms in creation order
    history_index: str  # pins the index that serves history pages (SQLite's planner needs it)
    # ``x {in_list}``: x is one of the list passed as one parameter (see ``list_arg``).
    in_list: str
    no_limit: int | None  # a LIMIT parameter that means "no limit"

    def render(self, template: str) -> str:
        """``template`` with its slots filled and, if numbered, its placeholders numbered."""
        sql = template.format(
            lock_sphere=self.lock_sphere,
            collate=self.collate,
            false=self.false,
            greatest=self.greatest,
            least=self.least,
            creation_order=self.creation_order,
            history_index=self.history_index,
            in_list=self.in_list,
        )
        return self.placeholders(sql)

    def placeholders(self, sql: str) -> str:
        """``sql`` with its ``?`` placeholders numbered, if the dialect numbers them."""
        if not self.numbered:
            return sql
        count = itertools.count(1)
        return _PLACEHOLDER.sub(lambda _: f"${next(count)}", sql)

    def list_arg(self, values: Sequence[Any]) -> Any:
        """``values`` as the one parameter of ``in_list``: an array, or a JSON array."""
        return list(values) if self.numbered else json.dumps(list(values))


SQLITE = Dialect(
    name="sqlite",
    numbered=False,
    lock_sphere="",
    collate="",
    false="0",
    greatest="max",
    least="min",
    creation_order="rowid",
    history_index="INDEXED BY events_history",
    in_list="IN (SELECT value FROM json_each(?))",
    no_limit=-1,
)
POSTGRES = Dialect(
    name="postgres",
    numbered=True,
    lock_sphere="FOR NO KEY UPDATE",
    collate=' COLLATE "C"',
    false="false",
    greatest="greatest",
    least="least",
    creation_order="created_seq",
    history_index="",
    in_list="= ANY(?::text[])",
    no_limit=None,
)
