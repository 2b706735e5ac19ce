"""Frames of private messages (``docs/protocol.md``, "Private messages").

A private conversation is a sphere of type ``direct``: ``open_direct`` makes one (or finds the
one-to-one conversation the same two people already have in the same context) and answers
with ``sphere_info``; everything else is done with the frames of any sphere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from protocol.fields import MAX_ID_CHARS, MAX_NAME_CHARS, Frame, _opt_text, _ref
from protocol.types import OrgId, SphereId, UserId

# Why 10: a conversation among a few people; a larger group is a sphere with administrators.
MAX_DIRECT_PARTICIPANTS = 10


@dataclass(frozen=True, slots=True)
class OpenDirect(Frame):
    """A private conversation between the caller and ``user_ids`` (1 to 9 others).

    The context is an organisation every participant belongs to (``org_id``) or a sphere every
    participant is a member of (``context_sphere_id``); with neither, the caller's only
    organisation. Two people have one conversation per context: opening it again returns it.
    """

    TYPE: ClassVar[str] = "open_direct"
    # The others (naming oneself too changes nothing): each a user id, at most all but one.
    user_ids: list[UserId] = field(
        metadata={
            "min_chars": 1,
            "max_chars": MAX_ID_CHARS,
            "min_items": 1,
            "max_items": MAX_DIRECT_PARTICIPANTS,
        }
    )
    org_id: OrgId | None = _opt_text(MAX_ID_CHARS)
    context_sphere_id: SphereId | None = _opt_text(MAX_ID_CHARS)
    name: str | None = _opt_text(MAX_NAME_CHARS)
    ref: str | None = _ref()
