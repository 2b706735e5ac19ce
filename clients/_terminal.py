"""The terminal side of ``cloison chat``: an editable input line under printed lines, and
stdin read without blocking the event loop. Text from the server goes through ``clean``
before it reaches the screen, so nobody can send escape sequences to a terminal."""

from __future__ import annotations

import asyncio
import codecs
import os
import stat
import unicodedata
from enum import Enum
from typing import TextIO

READ_CHUNK_BYTES = 4096


class Key(Enum):
    EDITED = "edited"  # the input line changed (the user is typing)
    END = "end"  # Ctrl-D on an empty line, or the end of input


def clean(text: str) -> str:
    """``text`` without control characters (escape sequences included), tabs as spaces."""
    return "".join(
        " " if ch == "\t" else ch
        for ch in text
        if ch in "\t\n" or unicodedata.category(ch) not in ("Cc", "Cf")
    )


class Terminal:
    """Writes lines, and turns input bytes into submitted lines and keys.

    Interactive (a terminal in cbreak mode): keeps the line being typed, echoes it, and
    redraws it after each line printed above it. Otherwise: splits input at newlines.
    """

    def __init__(self, out: TextIO, *, interactive: bool) -> None:
        self._out = out
        self._interactive = interactive
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._typed = ""  # the line being typed (interactive) or a partial line (pipe)
        self._escape = ""  # the start of an escape sequence (arrow keys...), to be skipped
        self.prompt = "> "

    def show(self, line: str) -> None:
        """Print ``line`` above the input line."""
        if self._interactive:
            self._out.write(f"\r\x1b[K{line}\n{self.prompt}{self._typed}")
        else:
            self._out.write(line + "\n")
        self._out.flush()

    def redraw(self) -> None:
        if self._interactive:
            self._out.write(f"\r\x1b[K{self.prompt}{self._typed}")
            self._out.flush()

    def feed(self, data: bytes) -> list[str | Key]:
        """What ``data`` (bytes read from stdin; empty at the end) amounts to."""
        text = self._decoder.decode(data, final=not data)
        if not self._interactive:
            return self._feed_lines(text, end=not data)
        items: list[str | Key] = []
        for ch in text:
            if self._escape or ch == "\x1b":
                self._skip_escape(ch)
            elif ch in "\r\n":
                items.append(self._typed)
                self._typed = ""
                self.redraw()
            elif ch in "\x7f\x08":
                self._typed = self._typed[:-1]
                self.redraw()
            elif ch == "\x15":  # Ctrl-U
                self._typed = ""
                self.redraw()
            elif ch == "\x04":  # Ctrl-D
                if not self._typed:
                    items.append(Key.END)
            elif ch.isprintable():
                self._typed += ch
                self._out.write(ch)
                self._out.flush()
                items.append(Key.EDITED)
        if not data:
            items.append(Key.END)
        return items

    def _feed_lines(self, text: str, *, end: bool) -> list[str | Key]:
        *lines, self._typed = (self._typed + text).split("\n")
        items: list[str | Key] = [line.rstrip("\r") for line in lines]
        if end:
            if self._typed:
                items.append(self._typed)
            items.append(Key.END)
        return items

    def _skip_escape(self, ch: str) -> None:
        """Swallow ``ESC [ ... final`` and ``ESC O x`` sequences (cursor keys and the like)."""
        self._escape += ch
        seq = self._escape
        if len(seq) == 1:
            return
        if seq[1] == "[":
            if len(seq) > 2 and "\x40" <= ch <= "\x7e":
                self._escape = ""
        elif seq[1] != "O" or len(seq) == 3:
            self._escape = ""


class Stdin:
    """Reads stdin without blocking the event loop: readiness callbacks on terminals and
    pipes, a worker thread for regular files (which cannot be polled but never block)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._pollable = not stat.S_ISREG(os.fstat(fd).st_mode)

    async def read(self) -> bytes:
        if not self._pollable:
            return await asyncio.to_thread(os.read, self._fd, READ_CHUNK_BYTES)
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(self._fd, wake)
        try:
            await ready
        finally:
            loop.remove_reader(self._fd)
        try:
            return os.read(self._fd, READ_CHUNK_BYTES)
        except OSError:  # a terminal that went away (EIO) ends the input like EOF
            return b""
