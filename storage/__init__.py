"""Persistence: each sphere's event stream and the directory of users, tokens and spheres.

- ``base``: the ``Store`` protocol (``MessageLog`` + ``Directory``), its records and errors;
- ``sqlite``: ``SqliteStore``, one SQLite file in WAL mode with group-committed appends;
- ``migrations``: numbered SQL files per engine and the ``schema_version`` bookkeeping;
- ``bench``: ``python -m storage.bench``, the durable ingest benchmark of ``SqliteStore``.

``open_store(url)`` picks the backend from a URL. Other packages import from here only.
"""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit

from storage.base import (
    AppendResult,
    Directory,
    Draft,
    MessageLog,
    NotFoundError,
    SphereRecord,
    Store,
    StoreError,
    TargetGoneError,
    TokenRecord,
    UserRecord,
)

__all__ = [
    "AppendResult",
    "Directory",
    "Draft",
    "MessageLog",
    "NotFoundError",
    "SphereRecord",
    "Store",
    "StoreError",
    "TargetGoneError",
    "TokenRecord",
    "UserRecord",
    "open_store",
]


async def open_store(url: str) -> Store:
    """Open the store named by ``url``; call its ``aclose()`` when done.

    ``sqlite:///data/cloison.sqlite3`` names a file relative to the working directory,
    ``sqlite:////var/lib/cloison.sqlite3`` an absolute one (the path is what follows
    ``sqlite:///``). The query may set ``synchronous=NORMAL`` (default ``FULL``, see
    ``SqliteStore.open``).

    Raises:
        ValueError: an unsupported scheme, a malformed URL or an unknown option.
        StoreError: the database cannot be opened or migrated.
    """
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = unquote(parts.path.removeprefix("/"))
        if parts.netloc or not path or path == ":memory:":
            raise ValueError(f"expected sqlite:///path/to/file.sqlite3, got {url!r}")
        options = parse_qs(parts.query, strict_parsing=bool(parts.query))
        if set(options) - {"synchronous"} or any(len(v) > 1 for v in options.values()):
            raise ValueError(f"unknown or repeated options in {url!r}; only synchronous=")
        # Imported here so that a backend's driver loads only when it is used.
        from storage.sqlite import SqliteStore

        return await SqliteStore.open(path, synchronous=options.get("synchronous", ["FULL"])[0])
    raise ValueError(f"unsupported store URL scheme {parts.scheme!r}; expected sqlite://")
