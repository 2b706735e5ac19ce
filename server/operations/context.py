"""What every handler of a request receives: the caller, and the shared dependencies."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from protocol import CloisonError, Codec, ErrorCode, Frame, JsonCodec, SphereId
from server.access import Granted
from server.access.org_rights import OrgGranted
from server.config import Config
from server.connection import Connection
from server.hub import Hub
from storage import Draft, Store, UserRecord


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Caller:
    user: UserRecord
    conn: Connection | None = None  # None for HTTP requests
    # What the org check found, for a row with an ``org_right`` (set by the dispatcher).
    org: OrgGranted | None = None


@dataclass(frozen=True, slots=True)
class PreparedWrite:
    """A checked write, ready to append: what ``prepare_write`` hands to ``commit_write``."""

    sphere_id: SphereId
    draft: Draft
    ref: str | None


# A request handler: the caller, the validated frame, and what the rights check found (None
# for a frame that names no sphere). Returns the reply, or None when it is sent otherwise.
Handler = Callable[[Caller, Any, Granted | None], Awaitable[Frame | None]]
# A write handler checks what the rights table cannot (the post exists, is one's own, ...) and
# builds the draft; the dispatcher spends the rate and commits.
WriteHandler = Callable[[Caller, Any, Granted], Awaitable[PreparedWrite]]


@dataclass(frozen=True, slots=True)
class Deps:
    store: Store
    hub: Hub
    config: Config
    http_codec: Codec = field(default_factory=JsonCodec)  # what the HTTP API answers in

    @property
    def page_bytes(self) -> int:
        """A page must fit a connection's queue and a client's default frame limit (1 MiB)."""
        return self.config.page_bytes

    def codec(self, caller: Caller) -> Codec:
        """The encoding the caller's replies travel in."""
        return caller.conn.codec if caller.conn is not None else self.http_codec

    def check_body(self, body: str) -> None:
        size = len(body.encode())
        if size > self.config.max_message_bytes:
            raise CloisonError(
                f"body of {size} bytes exceeds {self.config.max_message_bytes}",
                code=ErrorCode.TOO_LARGE,
            )


def connection(caller: Caller) -> Connection:
    if caller.conn is None:
        raise CloisonError("only available over a WebSocket", code=ErrorCode.BAD_FRAME)
    return caller.conn


def org_granted(caller: Caller) -> OrgGranted:
    """The org grant of an organisation request (the dispatcher always checks one for them)."""
    assert caller.org is not None, "an organisation request reached its handler unchecked"
    return caller.org


def granted(grant: Granted | None) -> Granted:
    """The grant of a sphere request (the dispatcher always checks one for them)."""
    assert grant is not None, "a sphere request reached its handler unchecked"
    return grant
