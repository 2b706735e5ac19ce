"""The one check every sphere request passes before its handler runs.

``authorise`` answers from this node's member map when the hub can show it is current (the
hot path: a member posting), and otherwise from the store, which is authoritative; a refusal
is always decided on the store's rows, so its code and message do not depend on the node.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from protocol import CloisonError, ErrorCode, Privacy, Role, SphereId, UserId
from server.access.rights import Right, allowed
from server.access.rules import SPHERE_NOT_FOUND, require_right
from storage import SphereRecord, Store

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
            (the same answer for both), ``forbidden`` when a right is missing.
    """
    fast = current(sphere_id, user_id)
    if fast is not None and all(allowed(right, fast[0], fast[1]) for right in rights):
        return Granted(sphere_id, fast[0], fast[1])
    # One read whether or not the sphere exists: the same time for both answers.
    sphere, role = await store.sphere_access(sphere_id, user_id)
    if sphere is None:
        raise CloisonError(SPHERE_NOT_FOUND, code=ErrorCode.NOT_FOUND)
    for right in rights:
        require_right(right, sphere.privacy, role)
    return Granted(sphere_id, sphere.privacy, role, sphere)
