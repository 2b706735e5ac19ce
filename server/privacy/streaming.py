"""What every export shares: the archive's response, the slots exports stream in, the
stream of members and manifest, and the lines of events and audit entries.

An export is planned, then streamed: ``start`` takes a slot and runs the plan (which counts
and audits); ``stream_archive`` writes the members page by page and the manifest last;
``ArchiveResponse`` gives the slot back however the response ends.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from protocol import CloisonError, ErrorCode, Message
from server.privacy.archive import MEDIA_TYPE, Row, ZipStream

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
FORMAT = "cloison-export"
ITEMS_HEADER = "X-Cloison-Export-Items"  # lines the archive will hold, all members together
COUNTS_HEADER = "X-Cloison-Export-Counts"  # the same per member, as a JSON object
# What the OpenAPI document says of an archive's body and headers.
ARCHIVE_SCHEMA = {"type": "string", "format": "binary", "description": "docs/privacy.md, Export"}
ARCHIVE_HEADERS = (
    (ITEMS_HEADER, "lines the archive holds, all members together (counted when it starts)"),
    (COUNTS_HEADER, "the same per member of the archive, as a JSON object"),
)
BUSY = "too many exports are running on this server; retry later"
# Why 500: a page of the largest bodies (16 KiB) stays under 8 MiB, and a page is one short
# read; the per-page overhead (a read, a thread hop) is then a few percent of the work.
PAGE_ROWS = 500
# Why 4: each running export holds a page or two and keeps a store reader busy in bursts; a
# few at once cannot crowd out the requests of everyone else.
MAX_RUNNING_EXPORTS = 4

Pages = AsyncIterator[Sequence[Any]]  # rows, or items a member's ``line`` makes rows of


class ExportSlots:
    """How many exports stream on this node, with the bound ``MAX_RUNNING_EXPORTS``."""

    def __init__(self, limit: int = MAX_RUNNING_EXPORTS) -> None:
        self._limit = limit
        self.running = 0

    def take(self) -> None:
        if self.running >= self._limit:
            raise CloisonError(BUSY, code=ErrorCode.UNAVAILABLE)
        self.running += 1

    def give(self) -> None:
        self.running -= 1


class ArchiveResponse(StreamingResponse):
    """A streamed archive that gives its export slot back however the response ends (sent,
    failed, or never started because the client went away)."""

    def __init__(
        self, chunks: AsyncIterator[bytes], headers: dict[str, str], release: Callable[[], None]
    ) -> None:
        super().__init__(chunks, 200, headers, media_type=MEDIA_TYPE)
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


def archive_headers(filename: str, counts: dict[str, int]) -> dict[str, str]:
    return {
        "Content-Disposition": f'attachment; filename="{filename}"',
        ITEMS_HEADER: str(sum(counts.values())),
        COUNTS_HEADER: orjson.dumps(counts).decode(),
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }


def stamp(now_ms: int) -> str:
    """``now_ms`` as a file name's UTC time: 20261207T231500Z."""
    return datetime.datetime.fromtimestamp(now_ms / 1000, datetime.UTC).strftime("%Y%m%dT%H%M%SZ")


def audit_detail(counts: dict[str, int]) -> str:
    """The counts as an audit entry's detail: ``messages=12,reactions=3`` (no content)."""
    return ",".join(f"{name.split('.')[0]}={n}" for name, n in counts.items())


# Why by hand: ``to_wire`` inspects every optional field of every event; this is the same map
# (fields that are not None; orjson writes the enums and the reactions' dataclass) at a fifth
# of the cost, which an export of a million events pays a million times.
_MESSAGE_FIELDS = tuple(f.name for f in dataclasses.fields(Message))


def message_line(message: Message) -> Row:
    """An event as the HTTP API shows it, without the frame's ``type``."""
    return {
        name: value for name in _MESSAGE_FIELDS if (value := getattr(message, name)) is not None
    }


@dataclass(frozen=True, slots=True)
class Member:
    """A member of the archive: its name, its pages, and what makes a row of each item."""

    name: str
    pages: Callable[[], Pages]
    line: Callable[[Any], Row] | None = None


async def stream_archive(
    members: Sequence[Member],
    manifest: Callable[[dict[str, int]], Row],
    what: str,
) -> AsyncIterator[bytes]:
    """The bytes of an archive of ``members`` (JSON lines, each read page by page) and a
    ``manifest.json`` built from the lines written. A failure ends the stream unfinished:
    the client sees a broken transfer, never a short archive that looks whole."""
    archive = ZipStream()
    try:
        for member in members:
            async for chunk in archive.member(member.name, member.pages(), member.line):
                yield chunk
        yield await archive.document("manifest.json", manifest(dict(archive.lines)))
        yield await archive.finish()
    except Exception:
        logger.exception("the export of %s failed after %d bytes", what, archive.bytes_out)
        raise


def sphere_audit_line(entry: Any) -> Row:
    return {
        "sphere_id": entry.sphere_id,
        "seq": entry.seq,
        "ts_ms": entry.ts_ms,
        "actor_id": entry.actor_id,
        "action": entry.action.value,
        "target_id": entry.target_id,
        "offset": entry.offset,
        "detail": entry.detail,
    }


async def count_lines(pages: Pages) -> int:
    return sum([len(page) async for page in pages])


async def start(
    slots: ExportSlots, plan: Callable[[], Awaitable[dict[str, int]]]
) -> Callable[[], None]:
    """Take an export slot and run ``plan``; returns what gives the slot back (the plan's
    failure gives it back at once)."""
    slots.take()
    try:
        await plan()
    except BaseException:
        slots.give()
        raise
    return slots.give
