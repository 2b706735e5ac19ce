"""The one check every sphere request passes before its handler runs.

``authorise`` answers from this node's member map when the hub can show it is current (the
hot path: a member posting), and otherwise from the store, which is authoritative; a refusal
is always decided on the store's rows, so its code and message do not depend on the node.
The store's read also says whether the caller is banned (an outsider with no right but to see)
or muted (a member without the rights that speak, until the mute ends); the mute is checked
again where writes commit, whatever node the mute came through.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from protocol import CloisonError, ErrorCode, Privacy, Role, SphereId, UserId
from server.access.rights import Right, allowed
from server.access.rules import SPHERE_NOT_FOUND, require_right
from storage import MutedError, SphereRecord, Store

# (privacy, role) of a member from a current member map; None: ask the store.
CurrentAccess = Callable[[SphereId, UserId], tuple[Privacy, Role] | None]


@dataclass(frozen=True, slots=True)
class Granted:
    """What the check found: the caller's role, and the sphere's row when it read the store."""

    sphere_id: SphereId
    privacy: Privacy
    role: Role | None
    sphere: SphereRecord | None = None  # None when the member map answered


async def authorise(
    store: Store,
    current: CurrentAccess,
    user_id: UserId,
    sphere_id: SphereId,
    rights: Sequence[Right],
) -> Granted:
    """Check that ``user_id`` holds every one of ``rights`` in the sphere.

    Raises:
        CloisonError: ``not_found`` when the sphere does not exist or is hidden from the caller
            (the same answer for both), ``forbidden`` when a right is missing (``MutedError``
            when a mute took it, saying until when).
    """
    fast = current(sphere_id, user_id)
    if fast is not None and all(allowed(right, fast[0], fast[1]) for right in rights):
        return Granted(sphere_id, fast[0], fast[1])
    # One read whether or not the sphere exists: the same time for both answers.
    standing = await store.sphere_standing(sphere_id, user_id)
    sphere, role = standing.sphere, standing.role
    if sphere is None:
        raise CloisonError(SPHERE_NOT_FOUND, code=ErrorCode.NOT_FOUND)
    muted = standing.muted(time.time_ns() // 1_000_000)
    for right in rights:
        if muted and not allowed(right, sphere.privacy, role, muted=True):
            require_right(right, sphere.privacy, role)  # lacking the right is the answer
            assert standing.muted_until_ms is not None
            raise MutedError(standing.muted_until_ms)
        require_right(right, sphere.privacy, role, banned=standing.banned)
    return Granted(sphere_id, sphere.privacy, role, sphere)
