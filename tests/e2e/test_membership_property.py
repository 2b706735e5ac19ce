"""What a user received live equals what a fresh history read shows, over random interleavings.

Two gateway processes on one PostgreSQL and Redis. Hypothesis draws a sequence of posts,
additions, removals and role changes, each sent through a gateway it draws too; every user
follows the sphere on a gateway of their own while they are a member (subscribing again when
added back). Afterwards, for every span in which a user was subscribed, the ``message`` frames
they received must be exactly the events a history read shows for that span: nothing missed,
nothing extra, nothing from after their removal (Zulip's ``verify_action`` idea).

Bounded for CI: ``CLOISON_PROPERTY_EXAMPLES`` examples (default 25) on one cluster.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest
from hypothesis import HealthCheck, Phase, given, note, settings, strategies as st

from protocol import (
    Ack,
    AddMember,
    ErrorReply,
    History,
    HistoryPage,
    Message,
    Ok,
    Publish,
    RemoveMember,
    SetRole,
    Subscribe,
    Subscribed,
    Unsubscribed,
)
from tests.e2e.conftest import FAST
from tests.services import POSTGRES_URL, TIMEOUT_S, require_shared_redis
from tests.support import Client, ServerProcess, User

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.slow]

EXAMPLES = int(os.environ.get("CLOISON_PROPERTY_EXAMPLES", "25"))
NODES = 2
USERS = 3  # besides the owner, who makes every membership change

Step = tuple[str, int, int]  # (what, user index, node index)
steps = st.lists(
    st.tuples(
        st.sampled_from(["post", "post", "add", "remove", "promote", "demote"]),
        st.integers(0, USERS - 1),
        st.integers(0, NODES - 1),
    ),
    min_size=4,
    max_size=14,
)


class Cluster:
    """The gateways and the people of every example (a plain class: a short repr)."""

    def __init__(
        self, nodes: list[ServerProcess], owner: User, users: list[User], homes: list[int]
    ) -> None:
        self.nodes = nodes
        self.owner = owner
        self.users = users
        self.homes = homes  # the gateway each user follows the sphere on

    def __repr__(self) -> str:
        return f"Cluster(homes={self.homes})"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_shared_redis()
    schema = f"cloison_test_{secrets.token_hex(6)}"
    prefix = f"cloison-test-{secrets.token_hex(4)}:"
    root = tmp_path_factory.mktemp("property")
    nodes = []
    for i in range(NODES):
        node = ServerProcess(
            root / f"node{i}",
            extra_args=[*FAST, "--redis-url", "redis://127.0.0.1:6379/0", "--redis-prefix", prefix],
            store_url=f"{POSTGRES_URL}?schema={schema}",
        )
        node.data_dir.mkdir()
        nodes.append(node)
    try:
        nodes[0].create_admin()
        for node in nodes:
            node.admin_token = nodes[0].admin_token
            node.start()

        async def people() -> tuple[User, list[User]]:
            owner = await nodes[0].new_user("owner")
            return owner, [await nodes[0].new_user(f"u{n}") for n in range(USERS)]

        owner, users = asyncio.run(people())
        yield Cluster(nodes, owner, users, [n % NODES for n in range(USERS)])
    finally:
        for node in nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.stop()
        asyncio.run(_drop(schema))


async def _drop(schema: str) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        db = await asyncpg.connect(POSTGRES_URL)
        try:
            await db.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await db.close()


@dataclass
class Follower:
    """One user's connection on their gateway and the spans they were subscribed for."""

    client: Client
    received: list[Message] = field(default_factory=list)
    spans: list[list[int]] = field(default_factory=list)  # [after, up to] per subscription
    subscribed: bool = False

    async def subscribe(self, sphere_id: str) -> None:
        reply = await self.client.request(Subscribe(sphere_id=sphere_id, ref=self.client.ref()))
        assert isinstance(reply, Subscribed), reply
        self.spans.append([reply.position.offset, reply.position.offset])
        self.subscribed = True

    def take(self) -> None:
        """Move the messages that arrived into ``received``; note ``unsubscribed``."""
        for frame in self.client.inbox:
            if isinstance(frame, Message):
                self.received.append(frame)
            elif isinstance(frame, Unsubscribed):
                assert frame.reason == "access_revoked"
                self.subscribed = False
        self.client.inbox.clear()

    async def until(self, offset: int) -> None:
        """Wait until the subscription got ``offset``; its span ends there."""
        async with asyncio.timeout(TIMEOUT_S):
            while max([self.spans[-1][0], *(m.offset for m in self.received[-1:])]) < offset:
                self.client.inbox.append(await self.client.recv())
                self.take()
        self.spans[-1][1] = offset

    async def ended(self, removal: int) -> None:
        """Wait for the end of the subscription: its span ends at the removal."""
        async with asyncio.timeout(TIMEOUT_S):
            while self.subscribed:
                self.client.inbox.append(await self.client.recv())
                self.take()
        self.spans[-1][1] = removal


async def scenario(cluster: Cluster, plan: list[Step]) -> None:
    owner = cluster.owner
    sphere_id = await owner.create_sphere("property")
    admins = [await Client.connect(node.ws_url, owner.token) for node in cluster.nodes]
    followers = [
        Follower(await Client.connect(cluster.nodes[home].ws_url, user.token))
        for user, home in zip(cluster.users, cluster.homes, strict=True)
    ]
    members: set[int] = set()
    try:
        head = 1
        for what, who, node in plan:
            user, follower, admin = cluster.users[who], followers[who], admins[node]
            if what == "post":
                c = follower.client
                reply = await c.request(
                    Publish(sphere_id=sphere_id, message_id=c.ref(), body=f"{who}", ref=c.ref())
                )
                if who in members:
                    assert isinstance(reply, Ack), reply
                    head = reply.offset
                else:  # refused whichever gateway still followed them
                    assert isinstance(reply, ErrorReply) and reply.code == "not_found", reply
            elif what == "add":
                ok = await admin.request(
                    AddMember(sphere_id=sphere_id, user_id=user.user_id, ref=admin.ref())
                )
                assert isinstance(ok, Ok), ok
                if who not in members:
                    members.add(who)
                    head += 1
                    await follower.subscribe(sphere_id)  # its node may lag: it catches up first
            elif what == "remove":
                reply = await admin.request(
                    RemoveMember(sphere_id=sphere_id, user_id=user.user_id, ref=admin.ref())
                )
                if who in members:
                    assert isinstance(reply, Ok), reply
                    members.discard(who)
                    head += 1
                    await follower.ended(head)  # the removal, then the end
                else:
                    assert isinstance(reply, ErrorReply) and reply.code == "not_found", reply
            else:
                role = "admin" if what == "promote" else "member"
                reply = await admin.request(
                    SetRole(sphere_id=sphere_id, user_id=user.user_id, role=role, ref=admin.ref())
                )
                if isinstance(reply, Ok):
                    head = await current_head(owner, sphere_id)
                else:
                    assert who not in members and reply.code == "not_found", reply  # type: ignore[attr-defined]
            for other in followers:
                other.take()
        for index in members:
            await followers[index].until(head)
        history = await read_history(admins[0], sphere_id)
        assert [m.offset for m in history] == list(range(1, head + 1))
        for follower in followers:
            follower.take()
            expected = [
                m for after, upto in follower.spans for m in history if after < m.offset <= upto
            ]
            assert follower.received == expected
    finally:
        for client in [*admins, *(f.client for f in followers)]:
            Client.opened.remove(client)
            await client.close()


async def current_head(owner: User, sphere_id: str) -> int:
    reply = await owner.api("GET", "/spheres")
    (sphere,) = [s for s in reply.json()["spheres"] if s["sphere_id"] == sphere_id]
    return int(sphere["offset"])


async def read_history(client: Client, sphere_id: str) -> list[Message]:
    events: list[Message] = []
    while True:
        after = events[-1].offset if events else 0
        page = await client.request(
            History(sphere_id=sphere_id, after=after, limit=200, ref=client.ref())
        )
        assert isinstance(page, HistoryPage), page
        events += page.messages
        if not page.has_more:
            return events


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
    # Each example runs against real processes: shrinking would take minutes; the failing
    # plan is printed instead.
    phases=[Phase.explicit, Phase.generate],
)
@given(plan=steps)
def test_live_delivery_equals_history_across_gateways(cluster: Cluster, plan: list[Step]) -> None:
    note(f"plan: {plan}, homes: {cluster.homes}")
    asyncio.run(scenario(cluster, plan))


def test_examples_are_bounded() -> None:
    assert 1 <= EXAMPLES <= 200
    assert Path(__file__).name.startswith("test_")
