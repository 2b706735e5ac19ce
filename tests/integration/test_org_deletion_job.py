"""The organisation deletion job (``server.lifecycle.service.OrgDeletionRunner``) on every
backend: a job stopped halfway (a sphere deleted, then the process gone) resumes and deletes
each sphere once; two runners never run one job at once; a legal hold keeps the job held until
it is lifted; the accounts it hands over are deleted by the account deletion job."""

from __future__ import annotations

from protocol import EventKind, Message, MessageId, OrgId, Privacy, SphereId, UserId, UserKind
from server.config import Config
from server.lifecycle.service import OrgDeletionRunner
from server.operations import now_ms
from server.privacy.account_deletion import DeletionRunner
from storage import (
    OPERATOR,
    DeletionMode,
    DeletionState,
    Draft,
    OrgDeletionState,
    Store,
)
from tests.contract.conftest import backend, store

__all__ = ["backend", "store"]  # the contract suite's fixtures: one run per engine

CONFIG = Config(account_deletion_pause_s=0.0)
T0 = 1_700_000_000_000


async def acme(store: Store, spheres: int) -> tuple[OrgId, UserId, list[SphereId]]:
    org = await store.create_org("Acme", now_ms=T0, actor_id=OPERATOR, org_id=OrgId("acme"))
    ada = await store.create_user(
        "Ada", UserKind.HUMAN, is_admin=False, now_ms=T0, org_id=org.org_id
    )
    made = []
    for n in range(spheres):
        sphere = await store.create_sphere(
            f"s{n}", Privacy.PRIVATE, ada.user_id, now_ms=T0, org_id=org.org_id
        )
        draft = Draft(EventKind.POST, MessageId(f"m{n}"), ada.user_id, T0, body="text")
        await store.append(sphere.sphere_id, draft)
        made.append(sphere.sphere_id)
    return org.org_id, ada.user_id, made


async def test_a_job_stopped_halfway_resumes_and_deletes_each_sphere_once(store: Store) -> None:
    org_id, ada, spheres = await acme(store, 3)
    await store.request_org_deletion(
        org_id, requested_by="admin", mode=DeletionMode.ERASE, now_ms=now_ms()
    )
    # The first process deleted one sphere, then stopped holding its lease.
    await store.claim_org_deletion(org_id, owner="gone", now_ms=now_ms(), lease_ms=1)
    step = await store.delete_org_sphere(org_id, now_ms=now_ms())
    assert step.event is not None

    published: list[Message] = []

    async def publish(event: Message) -> None:
        published.append(event)

    runner = OrgDeletionRunner(store, CONFIG, owner="next", publish=publish)
    assert await runner.run(org_id) is OrgDeletionState.DONE
    job = await store.get_org_deletion(org_id)
    assert job is not None and job.spheres_deleted == 3 and job.accounts_handed_over == 1
    assert sorted(e.sphere_id for e in published) == sorted(set(spheres) - {step.event.sphere_id})
    assert all(e.kind is EventKind.SPHERE and e.deleted for e in published)
    for sphere_id in spheres:
        assert await store.get_sphere(sphere_id) is None
    assert await store.get_org(org_id) is None
    assert await runner.run(org_id) is None  # done: nothing to claim

    accounts = DeletionRunner(store, CONFIG, owner="next")
    assert await accounts.run(ada) is DeletionState.DONE
    assert await store.get_user(ada) is None


async def test_two_runners_never_run_one_job_at_once(store: Store) -> None:
    org_id, _, _ = await acme(store, 1)
    await store.request_org_deletion(
        org_id, requested_by="admin", mode=DeletionMode.ERASE, now_ms=now_ms()
    )
    await store.claim_org_deletion(org_id, owner="first", now_ms=now_ms(), lease_ms=60_000)
    second = OrgDeletionRunner(store, CONFIG, owner="second")
    assert await second.run(org_id) is None
    assert await store.get_org(org_id) is not None


async def test_a_legal_hold_keeps_the_job_held_until_it_is_lifted(store: Store) -> None:
    org_id, _, (held, free) = await acme(store, 2)
    await store.set_legal_hold(held, UserId(OPERATOR), until_ms=None, reason="case", now_ms=T0)
    await store.request_org_deletion(
        org_id, requested_by="admin", mode=DeletionMode.ERASE, now_ms=now_ms()
    )
    runner = OrgDeletionRunner(store, CONFIG, owner="node")
    assert await runner.run(org_id) is OrgDeletionState.HELD
    assert await store.get_sphere(free) is None and await store.get_sphere(held) is not None
    assert await store.open_org_deletions(10) == [org_id]  # looked at again at every poll
    await store.release_legal_hold(held, UserId(OPERATOR), now_ms=now_ms())
    assert await runner.run(org_id) is OrgDeletionState.DONE
    assert await store.get_sphere(held) is None and await store.get_org(org_id) is None
