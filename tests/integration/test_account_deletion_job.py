"""The deletion job (``server.privacy.account_deletion.DeletionRunner``) on every backend: a
legal hold (set and lifted through the store, as its routes do) keeps a sphere's content until
it is lifted, two runners on one store (two gateways) never do a job's work twice, and a large
job leaves the event loop responsive."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from protocol import EventKind, MemberAction, Message, MessageId, Privacy, SphereId, UserId
from server.config import Config
from server.operations import now_ms
from server.privacy.account_deletion import DeletionRunner
from storage import OPERATOR, DeletionMode, DeletionState, Draft, Store
from storage.sqlite import SqliteStore
from tests.contract.conftest import backend, store
from tests.contract.test_account_deletion import add_existing
from tests.contract.test_entry import NOW_MS, user

__all__ = ["backend", "store"]  # the contract suite's fixtures: one run per engine

CONFIG = Config(account_deletion_batch=3, account_deletion_pause_s=0.0)


async def hold(store: Store, sphere_id: SphereId) -> None:
    await store.set_legal_hold(
        sphere_id, UserId(OPERATOR), until_ms=None, reason="case 42", now_ms=now_ms()
    )


async def release(store: Store, sphere_id: SphereId) -> None:
    await store.release_legal_hold(sphere_id, UserId(OPERATOR), now_ms=now_ms())


async def two_spheres(store: Store, posts: int) -> tuple[UserId, list[SphereId]]:
    owner = await user(store, "owner")
    alice = await user(store, "alice")
    spheres = []
    for name in ("one", "two"):
        sphere = await store.create_sphere(name, Privacy.PRIVATE, owner.user_id, now_ms=NOW_MS)
        await add_existing(store, sphere.sphere_id, owner.user_id, alice.user_id)
        for n in range(posts):
            draft = Draft(EventKind.POST, MessageId(f"{name}{n}"), alice.user_id, NOW_MS, body="x")
            await store.append(sphere.sphere_id, draft)
        spheres.append(sphere.sphere_id)
    return alice.user_id, spheres


async def authored(store: Store, sphere_id: SphereId, author: UserId) -> int:
    return sum(e.author_id == author for e in await store.events_after(sphere_id, 0, 1000))


async def test_a_legal_hold_keeps_the_content_until_it_is_lifted(store: Store) -> None:
    alice, (held, free) = await two_spheres(store, 5)
    await hold(store, held)
    events: list[Message] = []

    async def publish(event: Message) -> None:
        events.append(event)

    runner = DeletionRunner(store, CONFIG, owner="node", publish=publish)
    await store.request_account_deletion(
        alice, requested_by="cli", mode=DeletionMode.ERASE, now_ms=NOW_MS
    )
    assert await runner.run(alice) is DeletionState.HELD
    # The membership ended in both; only the sphere without a hold lost the content.
    assert sorted(e.sphere_id for e in events if e.action is MemberAction.DELETED) == sorted(
        [held, free]
    )
    assert await authored(store, held, alice) == 5 and await authored(store, free, alice) == 0
    job = await store.get_account_deletion(alice)
    assert job is not None and job.state is DeletionState.HELD and job.spheres_left == 1
    assert await store.get_user(alice) is not None  # its row waits with its content
    assert await runner.run(alice) is DeletionState.HELD  # looked at again: still held
    await release(store, held)
    assert await runner.run(alice) is DeletionState.DONE
    assert await authored(store, held, alice) == 0 and await store.get_user(alice) is None
    assert len([e for e in events if e.action is MemberAction.DELETED]) == 2


async def test_two_runners_on_one_store_do_the_work_once(store: Store) -> None:
    alice, spheres = await two_spheres(store, 12)
    await store.request_account_deletion(
        alice, requested_by="cli", mode=DeletionMode.ANONYMISE, now_ms=NOW_MS
    )
    runners = [DeletionRunner(store, CONFIG, owner=f"node{n}") for n in range(2)]
    states = await asyncio.gather(*(r.run(alice) for r in runners))
    # One took the lease; the other found the job taken (None) and left it.
    assert states.count(DeletionState.DONE) == 1 and states.count(None) == 1
    job = await store.get_account_deletion(alice)
    assert job is not None and job.state is DeletionState.DONE and job.rewritten == 24
    for sphere_id in spheres:
        stream = await store.events_after(sphere_id, 0, 1000)
        deleted = [e for e in stream if e.action is MemberAction.DELETED]
        assert len(deleted) == 1 and all(e.author_id != alice for e in stream)


async def test_a_held_sphere_left_empty_waits_for_its_hold_then_goes(store: Store) -> None:
    alice = await user(store, "alice")
    sphere = await store.create_sphere("alone", Privacy.PRIVATE, alice.user_id, now_ms=NOW_MS)
    draft = Draft(EventKind.POST, MessageId("p"), alice.user_id, NOW_MS, body="evidence")
    await store.append(sphere.sphere_id, draft)
    await hold(store, sphere.sphere_id)
    runner = DeletionRunner(store, CONFIG, owner="node")
    await store.request_account_deletion(
        alice.user_id, requested_by="cli", mode=DeletionMode.ERASE, now_ms=NOW_MS
    )
    assert await runner.run(alice.user_id) is DeletionState.HELD
    # Under the hold the sphere stays, without members, its content as it was.
    assert await store.get_sphere(sphere.sphere_id) is not None
    assert await store.list_members(sphere.sphere_id) == []
    assert await authored(store, sphere.sphere_id, alice.user_id) == 2  # its creation, its post
    await release(store, sphere.sphere_id)
    assert await runner.run(alice.user_id) is DeletionState.DONE
    assert await store.get_sphere(sphere.sphere_id) is None


# Why 20,000: a hundred batches at the default size, a few seconds on a busy machine.
LARGE_POSTS = 20_000
# The event loop's lag the job may cause (retention's bound, the gateway's budget).
MAX_LAG_S = 0.05


@pytest.mark.slow
async def test_a_large_job_keeps_the_event_loop_responsive(tmp_path: Path) -> None:
    async with await SqliteStore.open(tmp_path / "large.sqlite3") as store:
        owner = await user(store, "owner")
        alice = await user(store, "alice")
        sphere = await store.create_sphere("big", Privacy.PRIVATE, owner.user_id, now_ms=NOW_MS)
        await add_existing(store, sphere.sphere_id, owner.user_id, alice.user_id)
        body = "x" * 200
        for start in range(0, LARGE_POSTS, 5_000):  # within the append queue's bound
            await asyncio.gather(
                *(
                    store.append(
                        sphere.sphere_id,
                        Draft(EventKind.POST, MessageId(f"m{n}"), alice.user_id, NOW_MS, body=body),
                    )
                    for n in range(start, start + 5_000)
                )
            )
        await store.request_account_deletion(
            alice.user_id, requested_by="cli", mode=DeletionMode.ERASE, now_ms=NOW_MS
        )
        lags: list[float] = []
        running = asyncio.Event()

        async def measure() -> None:
            loop = asyncio.get_running_loop()
            while not running.is_set():
                before = loop.time()
                await asyncio.sleep(0.005)
                lags.append(loop.time() - before - 0.005)

        probe = asyncio.create_task(measure())
        started = time.perf_counter()
        state = await DeletionRunner(store, Config(), owner="node").run(alice.user_id)
        took = time.perf_counter() - started
        running.set()
        await probe
        job = await store.get_account_deletion(alice.user_id)
        assert state is DeletionState.DONE and job is not None and job.rewritten == LARGE_POSTS
        print(  # noqa: T201
            f"{LARGE_POSTS} posts erased in {took:.2f} s ({LARGE_POSTS / took:,.0f} events/s, "
            f"batches of 200); event loop lag max {max(lags) * 1000:.1f} ms"
        )
        assert max(lags) < MAX_LAG_S
