"""Sphere charters: the text a member accepts before reading, and who accepted which version.

A charter has a version that only grows: setting a text makes the next version, clearing it
too (a cleared charter reads as version 0, "none", and asks nothing of anyone; a later text
gets a version no member has accepted yet). Each change is a ``sphere`` event of the stream,
with its audit entry, in one transaction; whoever sets a text has accepted it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from protocol import CloisonError, ErrorCode, Message, Privacy, Role, SphereId, UserId

# Checks a charter change against the sphere's type and the actor's role; raises to refuse.
CheckCharter = Callable[[Privacy, Role | None], None]


@dataclass(frozen=True, slots=True)
class Charter:
    version: int  # 0: no charter
    text: str  # empty when there is none


class CharterNotCurrentError(CloisonError):
    """``accept_charter`` named a version that is not the sphere's current one."""

    code = ErrorCode.CONFLICT


class Charters(Protocol):
    async def get_charter(self, sphere_id: SphereId) -> Charter | None:
        """The sphere's charter (None: no such sphere)."""
        ...

    async def set_charter(
        self, sphere_id: SphereId, actor_id: UserId, text: str, check: CheckCharter, *, now_ms: int
    ) -> Message:
        """Make ``text`` (empty: none) the charter's next version, if ``check`` allows it.

        The actor accepts the new version in the same transaction, which also writes the
        ``sphere`` event and the ``charter_changed`` audit entry.

        Returns:
            The ``sphere`` event.

        Raises:
            NotFoundError: no such sphere.
            CloisonError: whatever ``check`` raised; nothing was written.
        """
        ...

    async def accept_charter(self, sphere_id: SphereId, user_id: UserId, version: int) -> None:
        """Record that the member accepted ``version``.

        Raises:
            NotFoundError: the user is not a member of the sphere (or it does not exist).
            CharterNotCurrentError: ``version`` is not the current charter's (or there is none).
        """
        ...
