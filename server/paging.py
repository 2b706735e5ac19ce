"""Replies sized in the bytes they take on the wire, and the cursors of paged lists.

A reply (a history page, a member or sphere list) is one WebSocket message, which must fit
the connection's outbound queue and the client's frame limit. What it costs is counted in the
reader's encoding: JSON writes a control character as six bytes, MessagePack as one. Lists
are paged by keyset: ``next`` is an opaque token holding the sort key of a page's last item,
which the client passes back as ``after``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import TypeVar

import orjson

from protocol import Codec, Frame, Message, ProtocolViolation

T = TypeVar("T")

# Why: a reply's own fields (type, sphere_id, has_more, ref, ...) around its items, at most.
REPLY_OVERHEAD_BYTES = 512


def encoded_size(codec: Codec, item: Frame) -> int:
    """Bytes ``item`` takes inside a reply's list in ``codec``: its encoding plus a separator."""
    return len(codec.encode(item)) + 1


def fit(items: list[T], *, budget: int, size: Callable[[T], int]) -> tuple[list[T], bool]:
    """The first of ``items`` that fit ``budget`` bytes (at least one); True if trimmed."""
    kept: list[T] = []
    used = REPLY_OVERHEAD_BYTES
    for item in items:
        used += size(item)
        if kept and used > budget:
            break
        kept.append(item)
    return kept, len(kept) < len(items)


def fit_listing(
    page: Sequence[T],
    limit: int,
    *,
    budget: int,
    size: Callable[[T], int],
    key: Callable[[T], tuple[object, ...]],
) -> tuple[list[T], str | None]:
    """A listing's reply: the items of ``page`` (read with ``limit + 1``) that fit ``budget``,
    and the cursor of the next page (None on the last one)."""
    items, trimmed = fit(list(page[:limit]), budget=budget, size=size)
    more = trimmed or len(page) > limit
    return items, cursor(key(items[-1])) if more and items else None


# The shapes of the two paging cursors: (role rank, name, user_id) and (name, sphere_id).
MEMBER_CURSOR = (int, str, str)
SPHERE_CURSOR = (str, str)


def cursor(key: tuple[object, ...]) -> str:
    """An opaque ``next`` token: where a page ended, in the list's sort order."""
    return base64.urlsafe_b64encode(orjson.dumps(key)).decode().rstrip("=")


def read_cursor(raw: str, shape: tuple[type, ...]) -> tuple[object, ...]:
    """The key a ``cursor`` token holds; ``bad_frame`` for anything else."""
    try:
        key = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        key = None
    if (
        not isinstance(key, list)
        or len(key) != len(shape)
        or not all(type(v) is t for v, t in zip(key, shape, strict=True))
    ):
        raise ProtocolViolation("after: not a cursor from this server (pass a page's next)")
    return tuple(key)


def fit_page(
    messages: list[Message], *, newest: bool, budget: int, codec: Codec
) -> tuple[list[Message], bool]:
    """Keep the end of the page nearest the reader within ``budget`` encoded bytes.

    Sizes are counted in the reader's encoding (JSON escapes a control character to six bytes,
    MessagePack does not). Paging back (``newest``) keeps the newest messages of the page,
    paging forward the oldest; at least one message is always kept (``Config`` guarantees any
    storable message fits a reply alone). Returns the page and whether it was trimmed.
    """
    ordered = list(reversed(messages)) if newest else messages
    kept, trimmed = fit(ordered, budget=budget, size=lambda m: encoded_size(codec, m))
    return (list(reversed(kept)) if newest else kept), trimmed
