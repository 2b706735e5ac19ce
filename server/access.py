"""The single answer to "may this user see, read, write or manage this sphere?".

A private sphere and a sphere that does not exist look the same to a non-member: both raise
``not_found`` with the same message after the same two store reads, so sphere ids are no
existence oracle. ``forbidden`` is only ever said about a sphere the caller can see.
"""

from __future__ import annotations

from protocol import CloisonError, ErrorCode, Privacy, Role, SphereId, UserId
from storage import SphereRecord, Store

SPHERE_NOT_FOUND = "sphere not found"


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
    sphere = await store.get_sphere(sphere_id)
    role = await store.get_role(sphere_id, user_id)
    if sphere is None or not visible(sphere, role):
        raise CloisonError(SPHERE_NOT_FOUND, code=ErrorCode.NOT_FOUND)
    return sphere, role


def require(allowed: bool, message: str) -> None:
    """Raise ``forbidden`` unless ``allowed``; only for spheres the caller can see."""
    if not allowed:
        raise CloisonError(message, code=ErrorCode.FORBIDDEN)
