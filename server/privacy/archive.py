"""A zip archive of JSON members, written as it is sent.

The archive goes to a sink that cannot seek (the HTTP response), so every member is written
with a data descriptor (its sizes and CRC follow its data) and the central directory comes
last; this is what ``zipfile`` does by itself on a sink without ``seek``. Members are written
one after another, each page of lines at a time; what a page compresses to is taken from the
sink at once, so the archive never holds more than one page. Making the rows, encoding and
compression run in a worker thread (``asyncio.to_thread``) while the next page is read: a
page costs milliseconds of Python and zlib, which the event loop does not spend.
"""

from __future__ import annotations

import asyncio
import io
import zipfile
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping, Sequence
from typing import IO, Any

import orjson

MEDIA_TYPE = "application/zip"
# Why 6: zlib's default; higher levels cost twice the time for a few percent on JSON text.
COMPRESS_LEVEL = 6

Row = Mapping[str, Any]


class _Sink(io.RawIOBase):
    """Where the zip is written: chunks kept until taken. It cannot seek, nor tell."""

    def __init__(self) -> None:
        super().__init__()
        self._chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._chunks.append(chunk)
        return len(chunk)

    def take(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


class ZipStream:
    """Members written in turn, each as pages of JSON lines or as one JSON document.

    ``lines`` counts the lines written per member. Calls must not overlap (each awaits the
    worker thread that writes); ``finish`` writes the central directory and must come last.
    """

    def __init__(self) -> None:
        self._sink = _Sink()
        self._zip = zipfile.ZipFile(
            self._sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL
        )
        self.lines: dict[str, int] = {}
        self.bytes_out = 0

    async def member(
        self,
        name: str,
        pages: AsyncIterable[Sequence[Any]],
        line: Callable[[Any], Row] | None = None,
    ) -> AsyncIterator[bytes]:
        """Write the member ``name`` of JSON lines, page by page; yields the archive's bytes
        after each page (empty chunks are left out). ``line`` makes each item of a page a
        row, in the worker thread with the encoding (None: the items are rows)."""
        # Why zip64: a member's size is not known before it is written, and may pass 4 GiB.
        handle = await asyncio.to_thread(self._zip.open, name, "w", force_zip64=True)
        self.lines[name] = 0
        # One page compresses in the thread while the next is read: two pages at most.
        writing: asyncio.Future[bytes] | None = None
        try:
            async for rows in pages:
                if not rows:
                    continue
                if writing is not None:
                    chunk = await writing
                    writing = None
                    if chunk:
                        yield chunk
                self.lines[name] += len(rows)
                writing = asyncio.ensure_future(
                    asyncio.to_thread(self._write_lines, handle, rows, line)
                )
            if writing is not None:
                chunk = await writing
                writing = None
                if chunk:
                    yield chunk
        finally:
            if writing is not None:  # the stream was abandoned: let the thread finish first
                await asyncio.wait([writing])
            await asyncio.to_thread(handle.close)
        chunk = self._take()
        if chunk:
            yield chunk

    async def document(self, name: str, value: Any) -> bytes:
        """Write the member ``name`` holding one JSON document; returns the archive's bytes."""
        data = orjson.dumps(value, option=orjson.OPT_INDENT_2) + b"\n"
        await asyncio.to_thread(self._zip.writestr, name, data)
        return self._take()

    async def finish(self) -> bytes:
        """Write the central directory; returns the archive's last bytes."""
        await asyncio.to_thread(self._zip.close)
        return self._take()

    def _write_lines(
        self, handle: IO[bytes], items: Sequence[Any], line: Callable[[Any], Row] | None
    ) -> bytes:
        rows = items if line is None else [line(item) for item in items]
        handle.write(b"".join(orjson.dumps(row) + b"\n" for row in rows))
        return self._take()

    def _take(self) -> bytes:
        chunk = self._sink.take()
        self.bytes_out += len(chunk)
        return chunk
