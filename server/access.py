"""The single answer to "may this user see, read, write or manage this sphere?".

A private sphere and a sphere that does not exist look the same to a non-member: both raise
``not_found`` with the same message after the same single store read, so sphere ids are no
existence oracle. ``forbidden`` is only ever said about a sphere the caller can see.
"""

from __future__ import annotations

import time

from protocol import CloisonError, ErrorCode, Privacy, Role, SphereId, UserId
from storage import SphereRecord, Store

SPHERE_NOT_FOUND = "sphere not found"
# Why: a safety net only; membership changes invalidate entries as they happen.
ROLE_CACHE_TTL_S = 30.0


def visible(sphere: SphereRecord, role: Role | None) -> bool:
    return role is not None or sphere.privacy in (Privacy.OPEN, Privacy.PUBLIC)


def can_read(sphere: SphereRecord, role: Role | None) -> bool:
    return role is not None or sphere.privacy is Privacy.PUBLIC


def can_manage(role: Role | None) -> bool:
    return role is not None and role.rank >= Role.ADMIN.rank


async def resolve(
    store: Store, sphere_id: SphereId, user_id: UserId
) -> tuple[SphereRecord, Role | None]:
    """The sphere and the caller's role in it.

    Raises:
        CloisonError: ``not_found`` when the sphere does not exist or is hidden from the caller.
    """
    # One read whether or not the sphere exists: the same time for both answers.
    sphere, role = await store.sphere_access(sphere_id, user_id)
    if sphere is None or not visible(sphere, role):
        raise CloisonError(SPHERE_NOT_FOUND, code=ErrorCode.NOT_FOUND)
    return sphere, role


def require(allowed: bool, message: str) -> None:
    """Raise ``forbidden`` unless ``allowed``; only for spheres the caller can see."""
    if not allowed:
        raise CloisonError(message, code=ErrorCode.FORBIDDEN)


class RoleCache:
    """Members' roles recently read from the store, so a stream of writes costs no read each.

    Only memberships are cached, never their absence, so a join takes effect at once. Every
    change of membership anywhere drops the entry (the hub relays changes between nodes);
    the expiry bounds how long a change lost with a broker outage can go unnoticed.
    """

    def __init__(self, ttl_s: float = ROLE_CACHE_TTL_S, max_entries: int = 100_000) -> None:
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._roles: dict[tuple[SphereId, UserId], tuple[Role, float]] = {}

    def get(self, sphere_id: SphereId, user_id: UserId) -> Role | None:
        entry = self._roles.get((sphere_id, user_id))
        if entry is None:
            return None
        role, expires = entry
        if time.monotonic() >= expires:
            del self._roles[(sphere_id, user_id)]
            return None
        return role

    def put(self, sphere_id: SphereId, user_id: UserId, role: Role) -> None:
        if len(self._roles) >= self._max_entries:
            self._roles.clear()  # rare; refilling costs one read per active writer
        self._roles[(sphere_id, user_id)] = (role, time.monotonic() + self._ttl_s)

    def forget(self, sphere_id: SphereId, user_id: UserId | None) -> None:
        """Drop one membership, or (``user_id`` None) every cached one of the sphere."""
        if user_id is not None:
            self._roles.pop((sphere_id, user_id), None)
        else:
            for key in [k for k in self._roles if k[0] == sphere_id]:
                del self._roles[key]

    def clear(self) -> None:
        self._roles.clear()
