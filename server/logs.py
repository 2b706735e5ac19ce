"""Logging setup: plain text or one JSON object per line, with no secrets and no floods.

Theory of operation. Every record, ours and uvicorn's, reaches one handler on the root logger,
and that handler's filters run in order on each record before it is formatted:

1. ``QuietLibraryLogs`` drops the debug lines of the libraries that log the data they carry.
   At debug level websockets logs every frame it reads or writes (``< TEXT
   '{"type":"auth","token":...'``) and every handshake header, and aiosqlite every operation
   with its SQL parameters (display names, charters, comments, reasons); no pattern could
   recognise a message body or a name, so those lines are never written, at any level.
2. ``ScrubSecrets`` renders the message and rewrites what looks like a credential: tokens
   (``clo_<id>_<secret>`` keeps its id, the lookup key, and loses the secret), ``token=``
   query values, query strings of logged WebSocket paths, and ``Authorization`` values. This is
   defence in depth: the code never logs those on purpose.
3. ``RateLimit`` bounds how fast one kind of line (logger + message template) is written: a
   burst, then one line per interval, which reports how many similar lines it replaced. A
   client that can make the server log once per request cannot fill the disk.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiosqlite
import orjson
import websockets

# Attributes every LogRecord has; anything else was passed through ``extra=`` and is kept.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

# Libraries whose debug records carry data (frames, SQL parameters): by logger name, and by
# where their files live, for records logged through another logger.
_QUIET_LOGGERS = ("websockets", "aiosqlite")
_QUIET_DIRS = tuple(str(Path(m.__path__[0]).resolve()) for m in (websockets, aiosqlite))

# A token's secret follows its id; keep the id (a lookup key, not a credential).
_TOKEN = re.compile(r"\b(clo_[0-9A-Za-z]+_)[0-9A-Za-z_\-]+")
_TOKEN_PARAM = re.compile(r"(?i)\b((?:access_)?token=)[^&\s\"'#]+")
_WEBSOCKET_QUERY = re.compile(r"(WebSocket [^\s?\"]*)\?[^\s\"]*")
_AUTHORIZATION = re.compile(r"(?i)(authorization[\"']?\s*[:=,]\s*b?[\"']?)[^\"'\r\n,)]+")
REDACTED = "…"


def scrub(text: str) -> str:
    """``text`` without anything shaped like a credential."""
    if "clo_" in text:
        text = _TOKEN.sub(r"\1" + REDACTED, text)
    if "=" in text:
        text = _TOKEN_PARAM.sub(r"\1" + REDACTED, text)
    if "WebSocket " in text:
        text = _WEBSOCKET_QUERY.sub(r"\1?" + REDACTED, text)
    if "uthorization" in text or "UTHORIZATION" in text:
        text = _AUTHORIZATION.sub(r"\1" + REDACTED, text)
    return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_text:
            entry["exception"] = record.exc_text
        elif record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class QuietLibraryLogs(logging.Filter):
    """Drop the debug lines of websockets (frames, headers) and aiosqlite (SQL parameters)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG:
            return True
        return not (
            record.name.startswith(_QUIET_LOGGERS) or record.pathname.startswith(_QUIET_DIRS)
        )


class ScrubSecrets(logging.Filter):
    """Render each record and remove credentials from its text, traceback and extras."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            rendered = record.getMessage()
        except (TypeError, ValueError):  # a bad template: logging reports it when emitting
            return True
        record.msg = scrub(rendered)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        for key, value in vars(record).items():
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, scrub(value))
        return True


class RateLimit(logging.Filter):
    """Per logger and message template: ``burst`` lines at once, then one per ``interval_s``.

    The first line let through after others were dropped says how many: ``(N similar
    messages suppressed)``. Must run before ``ScrubSecrets``, which renders the template away.
    """

    # Why: the templates are the code's own, a few hundred at most; this only bounds memory
    # if some library logs pre-formatted text (one key per distinct line).
    MAX_KEYS = 4096

    def __init__(
        self,
        burst: int = 20,
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.burst = burst
        self.interval_s = interval_s
        self._clock = clock
        # (logger, level, template) -> [tokens, last refill at, suppressed since last line]
        self._state: dict[tuple[str, int, str], list[float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        now = self._clock()
        key = (record.name, record.levelno, str(record.msg))
        state = self._state.get(key)
        if state is None:
            if len(self._state) >= self.MAX_KEYS:
                self._state.clear()
            state = self._state[key] = [float(self.burst), now, 0.0]
        tokens = min(self.burst, state[0] + (now - state[1]) / self.interval_s)
        state[1] = now
        if tokens < 1.0:
            state[0] = tokens
            state[2] += 1
            return False
        state[0] = tokens - 1.0
        suppressed = int(state[2])
        if suppressed:
            state[2] = 0
            record.msg = f"{record.msg} ({suppressed} similar messages suppressed)"
        return True


def configure(level: str, fmt: str) -> None:
    """Send every logger (ours and uvicorn's) to stderr in the chosen format, filtered."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
    handler.addFilter(QuietLibraryLogs())
    handler.addFilter(RateLimit())
    handler.addFilter(ScrubSecrets())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # Those libraries' own loggers stay above debug, whatever the level.
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.INFO, root.level))
