"""What every frame module shares: the field bounds, the field helpers and ``Frame``.

Field constraints live in each dataclass field's metadata (``min_chars``/``max_chars``,
``ge``/``le``) and are checked by the codec.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any, ClassVar

PROTOCOL_VERSION = 1

# Why these bounds: they keep every frame small and every field printable in a log line.
MAX_REF_CHARS = 64
MAX_ID_CHARS = 64
MAX_TOKEN_CHARS = 256
MAX_NAME_CHARS = 100
MAX_OFFSET = 2**63 - 1  # fits a signed 64-bit column in every store
MAX_HISTORY_LIMIT = 200
# Why: a century is longer than any legal retention duty; past it, "keep forever" is meant.
MAX_RETENTION_DAYS = 36_500
# Why: a list reply of this many members or spheres stays far below one frame.
MAX_LIST_LIMIT = 200
# Why: a paging cursor is the server's own short token; anything longer is not one.
MAX_CURSOR_CHARS = 1024


def _text(max_chars: int, *, min_chars: int = 1) -> Any:
    return field(metadata={"min_chars": min_chars, "max_chars": max_chars})


def _opt_text(max_chars: int) -> Any:
    return field(default=None, metadata={"min_chars": 1, "max_chars": max_chars})


def _int(lo: int, hi: int) -> Any:
    return field(metadata={"ge": lo, "le": hi})


def _opt_int(lo: int, hi: int) -> Any:
    return field(default=None, metadata={"ge": lo, "le": hi})


def _ref() -> Any:
    return _opt_text(MAX_REF_CHARS)


# The body limit is configurable per server, so the frame only bounds it loosely; the server
# enforces its own ``max_message_bytes`` and reports ``too_large``.
def _body() -> Any:
    return field(metadata={"min_chars": 1, "max_chars": 1 << 20})


class Frame:
    """Base of every frame; ``TYPE`` is the value of the wire ``type`` key."""

    __slots__ = ()
    TYPE: ClassVar[str]
