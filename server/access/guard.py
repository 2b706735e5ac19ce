"""The one check every sphere request passes before its handler runs.

``authorise`` answers from this node's member map when the hub can show it is current (the
hot path: a member posting), and otherwise from the store, which is authoritative; a refusal
is always decided on the store's rows, so its code and message do not depend on the node.

Reading is also where the charter and the history promise bind: a member who has not accepted
the sphere's current charter holds no ``read`` (``charter_required``), and every grant says
from which offset on its holder may read (``floor``). The member map does not know who
accepted a charter, so a read of a sphere with a charter is decided on the store's rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from protocol import CloisonError, ErrorCode, Privacy, Role, SphereId, UserId
from server.access.rights import Right, allowed
from server.access.rules import SPHERE_NOT_FOUND, history_floor, require_right
from storage import SphereRecord, Store

CHARTER_REQUIRED = "accept the sphere's charter first (get_charter, then accept_charter)"


@dataclass(frozen=True, slots=True)
class MapAccess:
    """A member as a current member map knows them."""

    privacy: Privacy
    role: Role
    floor: int  # the first offset they may read
    charter: bool  # the sphere has a charter: reads are decided on the store's rows


# A member from a current member map; None: ask the store.
CurrentAccess = Callable[[SphereId, UserId], MapAccess | None]


@dataclass(frozen=True, slots=True)
class Granted:
    """What the check found: the caller's role, the first offset they may read, the charter
    version they accepted, and the sphere's row when it read the store."""

    sphere_id: SphereId
    privacy: Privacy
    role: Role | None
    sphere: SphereRecord | None = None  # None when the member map answered
    floor: int = 0
    charter_accepted: int = 0


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
            (the same answer for both), ``forbidden`` when a right is missing,
            ``charter_required`` for a read by a member who has not accepted the charter.
    """
    reads = Right.READ in rights
    fast = current(sphere_id, user_id)
    if (
        fast is not None
        and not (reads and fast.charter)
        and all(allowed(right, fast.privacy, fast.role) for right in rights)
    ):
        return Granted(sphere_id, fast.privacy, fast.role, floor=fast.floor)
    # One read whether or not the sphere exists: the same time for both answers.
    sphere, member = await store.sphere_view(sphere_id, user_id)
    if sphere is None:
        raise CloisonError(SPHERE_NOT_FOUND, code=ErrorCode.NOT_FOUND)
    role = member.role if member is not None else None
    for right in rights:
        require_right(right, sphere.privacy, role)
    accepted = member.charter_accepted if member is not None else 0
    if reads and member is not None and accepted < sphere.charter_version:
        raise CloisonError(CHARTER_REQUIRED, code=ErrorCode.CHARTER_REQUIRED)
    return Granted(
        sphere_id,
        sphere.privacy,
        role,
        sphere,
        floor=history_floor(sphere, member),
        charter_accepted=accepted,
    )
