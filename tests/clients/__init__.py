"""Tests of the Python clients (SDK, bots, terminal chat) against a real server process.

Shared helpers live here; each test module declares its own ``server`` fixture with
``serving()`` so fixtures stay visible where they are used.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from clients import Client
from tests.e2e.conftest import start_server
from tests.support import ServerProcess

TIMEOUT_S = 10.0
E = TypeVar("E")


@contextmanager
def serving(tmp_path: Path, *options: str) -> Iterator[ServerProcess]:
    """A server with generous rate limits (unless ``options`` say otherwise) and an admin."""
    server = start_server(tmp_path, *options)
    try:
        yield server
    finally:
        server.stop()


async def next_event(
    client: Client, kind: type[E], timeout_s: float = TIMEOUT_S, **match: Any
) -> E:
    """The next event of ``kind`` whose attributes equal ``match``; earlier ones are dropped."""
    async with asyncio.timeout(timeout_s):
        async for event in client.events():
            if isinstance(event, kind) and all(getattr(event, k) == v for k, v in match.items()):
                return event
    raise AssertionError(f"the event stream ended before a {kind.__name__}")


async def read_until(
    stream: asyncio.StreamReader, pattern: str, timeout_s: float = TIMEOUT_S
) -> list[str]:
    """Lines read from ``stream`` up to and including the first that matches ``pattern``."""
    lines: list[str] = []
    async with asyncio.timeout(timeout_s):
        while True:
            raw = await stream.readline()
            if not raw:
                raise AssertionError(f"EOF before {pattern!r}; got:\n" + "".join(lines))
            line = raw.decode(errors="replace")
            lines.append(line)
            if re.search(pattern, line):
                return lines
