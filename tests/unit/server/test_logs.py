"""The log filters: credentials scrubbed from every part of a record; floods bounded."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from server.logs import QuietLibraryLogs, RateLimit, ScrubSecrets, scrub

SECRET = "Zk3v_9-QpLr2mX7tW8yB1nC4dE5fG6hJ0aS"
TOKEN = f"clo_0123456789abcdef_{SECRET}"


def record(
    msg: str, *args: object, name: str = "server.test", **extra: object
) -> logging.LogRecord:
    made = logging.makeLogRecord({"name": name, "msg": msg, "args": args, "levelno": 30})
    for key, value in extra.items():
        setattr(made, key, value)
    return made


@pytest.mark.parametrize(
    "text",
    [
        f"token {TOKEN} refused",
        f'{{"type":"auth","token":"{TOKEN}"}}',
        f"GET /ws?token={SECRET}&x=1",
        f'127.0.0.1:5 - "WebSocket /ws?access_token={SECRET}" [accepted]',
        f"Authorization: Bearer {SECRET}",
        f"(b'authorization', b'Bearer {SECRET}')",
        f"{{'authorization': 'Bearer {SECRET}'}}",
    ],
)
def test_scrub_removes_the_secret(text: str) -> None:
    assert SECRET not in scrub(text)


def test_scrub_keeps_the_token_id_and_plain_text() -> None:
    assert scrub(f"revoked {TOKEN}") == "revoked clo_0123456789abcdef_…"
    assert scrub("listening on 127.0.0.1:8000") == "listening on 127.0.0.1:8000"


def test_scrub_filter_covers_args_tracebacks_and_extras() -> None:
    try:
        raise ValueError(f"bad {TOKEN}")
    except ValueError:
        rec = record("failed for %s", TOKEN, detail=f"x {TOKEN}")
        rec.exc_info = sys.exc_info()
    assert ScrubSecrets().filter(rec)
    text = logging.Formatter().format(rec)
    assert SECRET not in text and "failed for clo_0123456789abcdef_…" in text
    assert "ValueError" in text
    assert SECRET not in str(rec.detail)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("name", "msg"), [("websockets.server", "< TEXT %r"), ("aiosqlite", "executing %s")]
)
def test_debug_lines_of_libraries_that_log_data_are_dropped(name: str, msg: str) -> None:
    quiet = QuietLibraryLogs()
    frame = record(msg, "body", name=name)
    frame.levelno = logging.DEBUG
    assert not quiet.filter(frame)
    frame.levelno = logging.INFO
    assert quiet.filter(frame)


def test_debug_lines_of_ours_pass() -> None:
    ours = record("debug of ours")
    ours.levelno = logging.DEBUG
    assert QuietLibraryLogs().filter(ours)


# A real aiosqlite operation with a parameter, in a process whose logging is set up as
# ``configure`` does it or as plain ``basicConfig`` (the control: there the parameter shows).
_SQL_AT_DEBUG = """
import asyncio, logging, sys
import aiosqlite
from server import logs
if sys.argv[1] == "configured":
    logs.configure("debug", "text")
else:
    logging.basicConfig(level=logging.DEBUG)
async def main():
    async with aiosqlite.connect(":memory:") as db:
        await db.execute_fetchall("SELECT ?", ["canary-display-name"])
    logging.getLogger("server.test").debug("ours at debug")
asyncio.run(main())
"""


@pytest.mark.parametrize("setup", ["configured", "plain"])
def test_sql_parameters_never_reach_the_logs(setup: str) -> None:
    ran = subprocess.run(
        [sys.executable, "-c", _SQL_AT_DEBUG, setup], capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    assert "ours at debug" in ran.stderr
    assert ("canary-display-name" in ran.stderr) is (setup == "plain")


def test_rate_limit_lets_a_burst_through_then_one_per_interval() -> None:
    now = [0.0]
    limit = RateLimit(burst=3, interval_s=10.0, clock=lambda: now[0])
    passed = [limit.filter(record("peer %s sent junk", n)) for n in range(100)]
    assert passed.count(True) == 3
    assert limit.filter(record("another template"))  # counted apart
    now[0] = 10.0
    line = record("peer %s sent junk", 1)
    assert limit.filter(line)
    assert "(97 similar messages suppressed)" in line.getMessage()
    assert not limit.filter(record("peer %s sent junk", 2))
    now[0] = 40.0  # refills up to the burst, not beyond
    assert [limit.filter(record("peer %s sent junk", n)) for n in range(5)].count(True) == 3
