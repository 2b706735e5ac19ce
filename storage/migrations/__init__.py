"""Numbered schema migrations, one folder per database engine.

- ``sqlite/NNNN_name.sql``: the SQLite schema, applied by ``storage.sqlite``;
- ``postgres/NNNN_name.sql``: the same logical schema for PostgreSQL, applied by
  ``storage.postgres`` (which also serialises concurrent openers with an advisory lock).

Each engine records the versions it applied in a ``schema_version`` table, one row per
migration. A store applies what is pending in one transaction when it opens, and refuses a
database whose version is newer than the files it ships: an older Cloison must not write to a
schema it does not know.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from storage.base import StoreError

_FILE_NAME = re.compile(r"(\d{4})_(\w+)\.sql")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(engine: str) -> tuple[Migration, ...]:
    """The migrations shipped for ``engine``, by ascending version.

    Raises:
        ValueError: the files are not numbered 1, 2, 3, ... (a packaging bug).
    """
    found = []
    for entry in resources.files(__name__).joinpath(engine).iterdir():
        match = _FILE_NAME.fullmatch(entry.name)
        if match is not None:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise ValueError(f"{engine} migrations are not numbered 1..{len(found)}")
    return tuple(found)


def pending_migrations(migrations: tuple[Migration, ...], current: int) -> tuple[Migration, ...]:
    """The migrations to apply to a database at version ``current``, in order.

    Raises:
        StoreError: the database is newer than every migration known here.
    """
    latest = migrations[-1].version if migrations else 0
    if current > latest:
        raise StoreError(
            f"database schema version {current} is newer than this Cloison supports "
            f"({latest}); upgrade Cloison"
        )
    return tuple(m for m in migrations if m.version > current)
