"""The one check every sphere request passes before its handler runs.

``authorise`` answers from this node's member map when the hub can show it is current (the
hot path: a member posting), and otherwise from the store, which is authoritative; a refusal
is always decided on the store's rows, so its code and message do not depend on the node.
The store's read also says whether the caller is banned (an outsider with no right but to see)
or muted (a member without the rights that speak, until the mute ends); the mute is checked
again where writes commit, whatever node the mute came through.

Reading is also where the charter and the history promise bind: a member who has not accepted
the sphere's current charter holds no ``read`` (``charter_required``), and every grant says
from which offset on its holder may read (``floor``). The member map does not know who
accepted a charter, so a read of a sphere with a charter is decided on the store's rows.

The member map knows the sphere's members, not their place in its organisation nor whether
the organisation is suspended: it answers only for writes (``fast``), whose commit checks the
author's membership and the organisation's suspension again in its own transaction. Every
other request is decided on the store's one read, which carries the caller's standing in the
sphere's organisation (``server.access.rights.OrgStanding``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from protocol import CloisonError, ErrorCode, Privacy, Role, SphereId, UserId
from server.access.rights import OrgStanding, Right, allowed
from server.access.rules import (
    SPHERE_NOT_FOUND,
    history_floor,
    org_standing,
    require_open_org,
    require_right,
)
from storage import MutedError, SphereRecord, Store

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
    org: OrgStanding = OrgStanding.MEMBER  # the caller's place in the sphere's organisation


async def authorise(
    store: Store,
    current: CurrentAccess,
    user_id: UserId,
    sphere_id: SphereId,
    rights: Sequence[Right],
    *,
    fast: bool = False,
) -> Granted:
    """Check that ``user_id`` holds every one of ``rights`` in the sphere.

    Raises:
        CloisonError: ``not_found`` when the sphere does not exist or is hidden from the caller
            (the same answer for both), ``forbidden`` when a right is missing (``MutedError``
            when a mute took it, saying until when), ``charter_required`` for a read by a
            member who has not accepted the charter; ``forbidden`` to members of a suspended
            organisation (``not_found`` to strangers to it).
    """
    reads = Right.READ in rights
    known = current(sphere_id, user_id) if fast else None
    if (
        known is not None
        and not (reads and known.charter)
        and all(allowed(right, known.privacy, known.role) for right in rights)
    ):
        return Granted(sphere_id, known.privacy, known.role, floor=known.floor)
    # One read whether or not the sphere exists: the same time for both answers.
    standing = await store.sphere_standing(sphere_id, user_id)
    sphere, member = standing.sphere, standing.member
    if sphere is None:
        raise CloisonError(SPHERE_NOT_FOUND, code=ErrorCode.NOT_FOUND)
    org = org_standing(standing.org_role)
    require_open_org(standing.org_suspended, org)
    role = member.role if member is not None else None
    if org is OrgStanding.STRANGER and role is not None:
        role = Role.VISITOR  # a visitor from outside, whatever the row says
    muted = standing.muted(time.time_ns() // 1_000_000)
    for right in rights:
        if muted and not allowed(right, sphere.privacy, role, muted=True, org=org):
            require_right(right, sphere.privacy, role, org=org)  # lacking it is the answer
            assert member is not None
            assert member.muted_until_ms is not None
            raise MutedError(member.muted_until_ms)
        require_right(right, sphere.privacy, role, banned=standing.banned, org=org)
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
        org=org,
    )
