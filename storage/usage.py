"""What an organisation's quotas count, and the refusals of the write path.

Appends are counted where they commit: each group commit reads the organisations of its
spheres (their policies and suspension, with the spheres' counters), and only for an
organisation with a ``messages_per_day`` or ``storage_bytes`` quota its usage rows, under a
lock that orders it with the other groups of that organisation (``org_usage``, migration
0014: one row per organisation and UTC day, the posts appended that day and the bytes of the
bodies written). A draft that would pass a quota fails alone with ``QuotaExceededError``; a
draft to a sphere of a suspended organisation with ``OrgSuspendedError``; nothing of either is
stored. An organisation with neither quota costs the group nothing more than its policies,
parsed once per distinct text (``org_policies``).

``storage_bytes`` counts the bytes (UTF-8) of the bodies of the posts and edits written since
the quota applies; bodies deleted later are not credited back, so the count is an upper bound
of what the organisation's posts hold.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from protocol import CloisonError, ErrorCode, EventKind
from storage.organisations import OrgPolicies

DAY_MS = 86_400_000
ORG_SUSPENDED = "the organisation is suspended"


class QuotaExceededError(CloisonError):
    """An append would pass one of its organisation's quotas; nothing was stored."""

    code = ErrorCode.QUOTA_EXCEEDED

    def __init__(self, quota: str, limit: int) -> None:
        super().__init__(f"the organisation's quota {quota} ({limit}) is reached")
        self.quota = quota
        self.limit = limit


class OrgSuspendedError(CloisonError):
    """An append to a sphere of a suspended organisation."""

    code = ErrorCode.FORBIDDEN

    def __init__(self) -> None:
        super().__init__(ORG_SUSPENDED)


@functools.lru_cache(maxsize=1024)
def org_policies(text: str) -> OrgPolicies:
    """The policies stored as ``text``, parsed once per distinct text."""
    return OrgPolicies.from_json(text)


def utc_day(ts_ms: int) -> int:
    """Days since 1970-01-01 (UTC): the usage row a write at ``ts_ms`` counts in."""
    return ts_ms // DAY_MS


def body_bytes(body: str | None) -> int:
    return len(body.encode()) if body is not None else 0


@dataclass(slots=True)
class _Org:
    suspended: bool
    messages_per_day: int | None
    storage_bytes: int | None
    used_bytes: int = 0
    posts: dict[int, int] = field(default_factory=dict)  # day -> posts counted


@dataclass(slots=True)
class OrgGate:
    """The organisations of one group's spheres, and their usage as the group goes.

    Built from rows of (sphere_id, org_id, policies, suspended_ms); ``load`` takes the usage
    rows of ``counted()``; ``refusal`` and ``count`` are called per draft, in draft order;
    ``deltas`` are the usage rows the group adds.
    """

    sphere_org: dict[str, str] = field(default_factory=dict)
    orgs: dict[str, _Org] = field(default_factory=dict)
    added: dict[tuple[str, int], list[int]] = field(default_factory=dict)

    @classmethod
    def of(cls, rows: Iterable[Sequence[Any]]) -> OrgGate:
        gate = cls()
        for sphere_id, org_id, policies, suspended_ms in rows:
            gate.sphere_org[sphere_id] = org_id
            if org_id not in gate.orgs:
                quotas = org_policies(policies or "{}").quotas
                gate.orgs[org_id] = _Org(
                    suspended_ms is not None, quotas.messages_per_day, quotas.storage_bytes
                )
        return gate

    def counted(self) -> list[str]:
        """The organisations whose usage the group must read (those with a quota), sorted."""
        return sorted(
            org_id
            for org_id, org in self.orgs.items()
            if not org.suspended
            and (org.messages_per_day is not None or org.storage_bytes is not None)
        )

    def load(self, rows: Iterable[Sequence[Any]]) -> None:
        """Usage rows of (org_id, day, posts, body_bytes) of the ``counted()`` organisations."""
        for org_id, day, posts, used in rows:
            org = self.orgs[org_id]
            org.used_bytes += used
            org.posts[day] = org.posts.get(day, 0) + posts

    def refusal(
        self, sphere_id: str, kind: EventKind, ts_ms: int, body: str | None
    ) -> CloisonError | None:
        """Why the draft may not be appended, or None."""
        org = self.orgs.get(self.sphere_org.get(sphere_id, ""))
        if org is None:
            return None
        if org.suspended:
            return OrgSuspendedError()
        limit = org.messages_per_day
        posting = kind is EventKind.POST
        if limit is not None and posting and org.posts.get(utc_day(ts_ms), 0) >= limit:
            return QuotaExceededError("messages_per_day", limit)
        limit = org.storage_bytes
        if limit is not None and body is not None and org.used_bytes + body_bytes(body) > limit:
            return QuotaExceededError("storage_bytes", limit)
        return None

    def count(self, sphere_id: str, kind: EventKind, ts_ms: int, body: str | None) -> None:
        """Count an appended draft against its organisation's quotas."""
        org_id = self.sphere_org.get(sphere_id)
        org = self.orgs.get(org_id or "")
        if org_id is None or org is None:
            return
        if org.messages_per_day is None and org.storage_bytes is None:
            return
        day = utc_day(ts_ms)
        posts = int(kind is EventKind.POST)
        used = body_bytes(body)
        org.posts[day] = org.posts.get(day, 0) + posts
        org.used_bytes += used
        delta = self.added.setdefault((org_id, day), [0, 0])
        delta[0] += posts
        delta[1] += used

    def deltas(self) -> list[tuple[str, int, int, int]]:
        """The usage the group adds: (org_id, day, posts, body_bytes), sorted."""
        return sorted((org_id, day, d[0], d[1]) for (org_id, day), d in self.added.items())
