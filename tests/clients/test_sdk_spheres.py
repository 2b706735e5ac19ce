"""The SDK's sphere settings, charter and audit-log methods against a real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from clients import CharterRequiredError, ForbiddenError, NotFoundError, RequestError
from protocol import (
    ErrorCode,
    EventKind,
    HistoryMode,
    JoinPolicy,
    Privacy,
    SphereId,
    Unsubscribed,
)
from tests.clients import next_event, serving
from tests.clients.governance import next_message, owned, sdk
from tests.support import ServerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with serving(tmp_path) as proc:
        yield proc


async def test_create_sphere_with_settings(server: ServerProcess) -> None:
    alice = await server.new_user("alice")
    async with sdk(server, alice) as a:
        sphere = await a.create_sphere(
            "club",
            Privacy.OPEN,
            listed=True,
            join_policy=JoinPolicy.APPROVAL,
            history=HistoryMode.FULL,
        )
        assert (sphere.privacy, sphere.listed) == (Privacy.OPEN, True)
        assert (sphere.join_policy, sphere.history) == (JoinPolicy.APPROVAL, HistoryMode.FULL)
        listed = await a.list_spheres(discover=True)
        assert sphere.sphere_id in {s.sphere_id for s in listed}


async def test_update_sphere_settings_reach_members_as_a_sphere_event(
    server: ServerProcess,
) -> None:
    (alice, bob), sphere_id = await owned(server, "alice", "bob", privacy=Privacy.OPEN)
    async with sdk(server, alice) as a, sdk(server, bob) as b:
        await b.subscribe(sphere_id)
        sphere = await a.update_sphere(sphere_id, listed=True, join_policy=JoinPolicy.APPROVAL)
        assert (sphere.listed, sphere.join_policy) == (True, JoinPolicy.APPROVAL)
        event = await next_message(b, kind=EventKind.SPHERE)
        assert (event.listed, event.join_policy) == (True, JoinPolicy.APPROVAL)
        with pytest.raises(ForbiddenError):
            await b.update_sphere(sphere_id, listed=False)


async def test_audit_log_lists_governance_acts_for_administrators_only(
    server: ServerProcess,
) -> None:
    (alice, bob), sphere_id = await owned(server, "alice", "bob")
    async with sdk(server, alice) as a, sdk(server, bob) as b:
        page = await a.audit(sphere_id)
        assert page.entries, "creating the sphere and adding bob are audited"
        assert [e.seq for e in page.entries] == sorted((e.seq for e in page.entries), reverse=True)
        assert bob.user_id in {e.target_id for e in page.entries}
        with pytest.raises(ForbiddenError) as refused:
            await b.audit(sphere_id)
        assert refused.value.code is ErrorCode.FORBIDDEN


async def test_errors_are_typed_by_code(server: ServerProcess) -> None:
    alice = await server.new_user("alice")
    async with sdk(server, alice) as a:
        with pytest.raises(NotFoundError) as missing:
            await a.audit(SphereId("s_doesnotexist"))
        assert isinstance(missing.value, RequestError)
        assert missing.value.code is ErrorCode.NOT_FOUND


async def test_charter_must_be_accepted_before_reading(server: ServerProcess) -> None:
    (alice, bob), sphere_id = await owned(server, "alice", "bob")
    async with sdk(server, alice) as a, sdk(server, bob) as b:
        await a.set_charter(sphere_id, "Be kind.")
        with pytest.raises(CharterRequiredError):
            await b.subscribe(sphere_id)
        charter = await b.charter(sphere_id)
        assert (charter.text, charter.version) == ("Be kind.", 1)
        assert charter.accepted != charter.version
        await b.accept_charter(sphere_id, charter.version)
        await b.subscribe(sphere_id)
        assert (await b.charter(sphere_id)).accepted == 1
        await a.set_charter(sphere_id, "")
        assert (await a.charter(sphere_id)).text == ""


async def test_a_new_charter_pauses_the_subscription_until_accepted(
    server: ServerProcess,
) -> None:
    (alice, bob), sphere_id = await owned(server, "alice", "bob")
    async with sdk(server, alice) as a, sdk(server, bob) as b:
        await b.subscribe(sphere_id)
        charter = await a.set_charter(sphere_id, "Be kind.")
        assert (charter.version, charter.accepted) == (1, 1)  # its author accepted it
        ended = await next_event(b, Unsubscribed, sphere_id=sphere_id)
        assert ended.reason == "charter"
        missed = await a.publish(sphere_id, "while you were reading the charter")
        await b.accept_charter(sphere_id, 1)
        await b.subscribe(sphere_id)  # resumes from where it stopped: nothing is lost
        replayed = await next_message(b, offset=missed.offset)
        assert replayed.body == "while you were reading the charter"
