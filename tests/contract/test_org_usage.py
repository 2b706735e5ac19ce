"""The storage contract of organisation quotas and suspension, on every backend: appends are
counted where they commit, per organisation and UTC day; a draft over a quota, or to a sphere
of a suspended organisation, fails alone and stores nothing; an organisation without such a
quota is not counted at all."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from protocol import EventKind, MessageId, OrgId, Privacy, SphereId, UserId, UserKind
from storage import (
    Draft,
    OrgSuspendedError,
    QuotaExceededError,
    SphereRecord,
    Store,
)
from storage.usage import DAY_MS

T0 = 1_700_000_000_000 // DAY_MS * DAY_MS + 3_600_000  # 01:00 UTC on some day


async def _execute(store: Store, sql: str, *args: Any) -> list[Any]:
    """A statement the store's API has no method for (the tests set policies and suspension
    as an organisation's managers and the server's administrators will)."""
    async with store._writing() as db:  # type: ignore[attr-defined]
        return list(await db.fetch(sql, *args))


async def _org(store: Store, **policies: Any) -> tuple[OrgId, UserId, SphereRecord]:
    author = await store.create_user("Ada", UserKind.HUMAN, is_admin=False, now_ms=T0, org_id=None)
    org = await store.create_org("Acme", now_ms=T0, actor_id="op", manager_id=author.user_id)
    await _execute(
        store,
        "UPDATE organisations SET policies = ? WHERE org_id = ?",
        orjson.dumps(policies).decode(),
        org.org_id,
    )
    sphere = await store.create_sphere(
        "team", Privacy.OPEN, author.user_id, now_ms=T0, org_id=org.org_id
    )
    return org.org_id, author.user_id, sphere


def _post(author: UserId, key: str, ts_ms: int = T0, body: str = "hello") -> Draft:
    return Draft(EventKind.POST, MessageId(key), author, ts_ms, body=body)


async def _usage(store: Store, org_id: OrgId) -> list[tuple[int, int, int]]:
    rows = await _execute(
        store, "SELECT day, posts, body_bytes FROM org_usage WHERE org_id = ? ORDER BY day", org_id
    )
    return [(row[0], row[1], row[2]) for row in rows]


async def _bodies(store: Store, sphere_id: SphereId) -> list[str | None]:
    return [e.body for e in await store.events_after(sphere_id, 0, 100) if e.kind is EventKind.POST]


async def test_messages_per_day_counts_posts_of_each_utc_day(store: Store) -> None:
    org_id, author, sphere = await _org(store, quotas={"messages_per_day": 2})
    await store.append(sphere.sphere_id, _post(author, "a"))
    first = await store.append(sphere.sphere_id, _post(author, "b"))
    with pytest.raises(QuotaExceededError) as refused:
        await store.append(sphere.sphere_id, _post(author, "c"))
    assert refused.value.quota == "messages_per_day" and "messages_per_day" in str(refused.value)
    # A retry of a stored post is its stored event, not another post.
    again = await store.append(sphere.sphere_id, _post(author, "b"))
    assert again.duplicate and again.event == first.event
    # Reactions and edits are not posts.
    react = Draft(
        EventKind.REACT, MessageId("r"), author, T0, target=first.event.offset, emoji="👍"
    )
    await store.append(sphere.sphere_id, react)
    await store.append(sphere.sphere_id, _post(author, "next day", T0 + DAY_MS))
    assert await _bodies(store, sphere.sphere_id) == ["hello"] * 3
    day = T0 // DAY_MS
    assert await _usage(store, org_id) == [(day, 2, 10), (day + 1, 1, 5)]


async def test_a_group_past_the_quota_fails_only_the_drafts_past_it(store: Store) -> None:
    org_id, author, sphere = await _org(store, quotas={"messages_per_day": 3})
    outcomes = await asyncio.gather(
        *(store.append(sphere.sphere_id, _post(author, f"k{n}")) for n in range(5)),
        return_exceptions=True,
    )
    assert [type(o).__name__ for o in outcomes].count("QuotaExceededError") == 2
    assert len(await _bodies(store, sphere.sphere_id)) == 3
    assert await _usage(store, org_id) == [(T0 // DAY_MS, 3, 15)]


async def test_storage_bytes_counts_the_bodies_written(store: Store) -> None:
    org_id, author, sphere = await _org(store, quotas={"storage_bytes": 12})
    post = await store.append(sphere.sphere_id, _post(author, "a", body="12345"))
    with pytest.raises(QuotaExceededError) as refused:
        await store.append(sphere.sphere_id, _post(author, "b", body="12345678"))
    assert refused.value.quota == "storage_bytes"
    edit = Draft(EventKind.EDIT, MessageId("e"), author, T0, body="été", target=post.event.offset)
    await store.append(sphere.sphere_id, edit)  # 5 bytes in UTF-8
    with pytest.raises(QuotaExceededError):
        await store.append(sphere.sphere_id, _post(author, "c", body="xyz"))
    await store.append(sphere.sphere_id, _post(author, "d", body="xy"))  # 12: at the quota
    assert await _usage(store, org_id) == [(T0 // DAY_MS, 2, 12)]


async def test_an_organisation_without_these_quotas_is_not_counted(store: Store) -> None:
    org_id, author, sphere = await _org(store, quotas={"members": 5})
    await store.append(sphere.sphere_id, _post(author, "a"))
    assert await _usage(store, org_id) == []


async def test_a_suspended_organisation_stores_nothing(store: Store) -> None:
    org_id, author, sphere = await _org(store, quotas={"messages_per_day": 10})
    await _execute(store, "UPDATE organisations SET suspended_ms = ? WHERE org_id = ?", T0, org_id)
    with pytest.raises(OrgSuspendedError):
        await store.append(sphere.sphere_id, _post(author, "a"))
    assert await _bodies(store, sphere.sphere_id) == []
    assert await _usage(store, org_id) == []
    await _execute(store, "UPDATE organisations SET suspended_ms = NULL WHERE org_id = ?", org_id)
    await store.append(sphere.sphere_id, _post(author, "a"))
    assert await _bodies(store, sphere.sphere_id) == ["hello"]
