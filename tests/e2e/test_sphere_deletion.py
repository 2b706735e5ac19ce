"""Deleting a sphere: every row of it goes, in one transaction; its subscribers on every node
are told; its id then answers as an id that never existed; the server's audit log keeps it."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

import aiosqlite
import asyncpg
import httpx
import pytest

from protocol import (
    Ack,
    DeleteSphere,
    ErrorReply,
    Frame,
    History,
    InvitationInfo,
    Invite,
    Message,
    Mute,
    Ok,
    Publish,
    React,
    Subscribe,
    Subscribed,
    Unsubscribed,
)
from tests.e2e.test_cluster import connect, gateways
from tests.services import POSTGRES_URL, REDIS_URL, TIMEOUT_S, require_shared_redis
from tests.support import Client, ServerProcess, User


class Rows(Protocol):
    """The store's tables, read and changed behind the servers' backs."""

    async def set_join_policy(self, sphere_id: str, policy: str) -> None: ...

    async def counts(self, sphere_id: str) -> dict[str, int]:
        """The sphere's rows in every table that has a ``sphere_id`` column."""
        ...


class SqliteRows:
    def __init__(self, path: Path) -> None:
        self.path = path

    async def set_join_policy(self, sphere_id: str, policy: str) -> None:
        async with aiosqlite.connect(self.path) as db:
            sql = "UPDATE spheres SET join_policy = ? WHERE sphere_id = ?"
            await db.execute(sql, (policy, sphere_id))
            await db.commit()

    async def counts(self, sphere_id: str) -> dict[str, int]:
        async with aiosqlite.connect(self.path) as db:
            tables = await db.execute_fetchall(
                "SELECT m.name FROM sqlite_master AS m, pragma_table_info(m.name) AS c"
                " WHERE m.type = 'table' AND c.name = 'sphere_id'"
            )
            found = {}
            for (table,) in tables:
                sql = f"SELECT count(*) FROM {table} WHERE sphere_id = ?"
                found[table] = next(iter(await db.execute_fetchall(sql, (sphere_id,))))[0]
        return found


class PostgresRows:
    def __init__(self, schema: str) -> None:
        self.schema = schema

    async def set_join_policy(self, sphere_id: str, policy: str) -> None:
        db = await asyncpg.connect(POSTGRES_URL, timeout=TIMEOUT_S)
        try:
            sql = f"UPDATE {self.schema}.spheres SET join_policy = $1 WHERE sphere_id = $2"
            await db.execute(sql, policy, sphere_id, timeout=TIMEOUT_S)
        finally:
            await db.close(timeout=TIMEOUT_S)

    async def counts(self, sphere_id: str) -> dict[str, int]:
        db = await asyncpg.connect(POSTGRES_URL, timeout=TIMEOUT_S)
        try:
            tables = await db.fetch(
                "SELECT table_name FROM information_schema.columns"
                " WHERE table_schema = $1 AND column_name = 'sphere_id'",
                self.schema,
            )
            found = {}
            for (table,) in tables:
                sql = f"SELECT count(*) FROM {self.schema}.{table} WHERE sphere_id = $1"
                found[table] = await db.fetchval(sql, sphere_id, timeout=TIMEOUT_S)
        finally:
            await db.close(timeout=TIMEOUT_S)
        return found


async def no_row_left(store: Rows, sphere_id: str, before: dict[str, int]) -> None:
    """Every table held rows of the sphere before its deletion, and none after."""
    assert all(before.get(table, 0) > 0 for table in ROW_TABLES), before
    after = await store.counts(sphere_id)
    assert after.keys() == before.keys()
    assert [table for table, count in after.items() if count] == []


# The default reconciliation interval (2 s), and the store reads it takes, on a busy machine.
RECONCILE_BOUND_S = 5.0
# The tables populate() leaves rows in (every table with a sphere_id is checked).
ROW_TABLES = (
    "spheres",
    "events",
    "members",
    "invitations",
    "join_requests",
    "bans",
    "sphere_audit",
    "reactions",
    "mentions",
    "thread_summaries",
    "reports",
    "departed_mutes",
)


def code(reply: Frame) -> str:
    assert isinstance(reply, ErrorReply), reply
    return reply.code


async def populate(node: ServerProcess, store: Rows) -> tuple[User, User, str]:
    """A sphere with members, posts, a reply, a mention, a reaction, a report, a read marker, an
    invitation, a ban, a mute and audit entries: something in every table of a sphere's rows."""
    owner = await node.new_user("owner")
    member = await node.new_user("member")
    sphere_id = await owner.create_sphere("doomed", privacy="public")
    await owner.add(sphere_id, member)
    o = await connect(owner, node)
    first = await o.request(
        Publish(sphere_id=sphere_id, message_id="p0", body=f"hi <@{member.user_id}>", ref="p0")
    )
    assert isinstance(first, Ack), first
    answer = Publish(
        sphere_id=sphere_id, message_id="p1", body="x", reply_to=first.offset, ref="p1"
    )
    assert isinstance(await o.request(answer), Ack)
    liked = React(sphere_id=sphere_id, message_id="r0", target=first.offset, emoji="👍", ref="r0")
    assert isinstance(await o.request(liked), Ack)
    reported = await member.api(
        "POST", f"/spheres/{sphere_id}/messages/{first.offset}/reports", json={"reason": "spam"}
    )
    assert reported.status_code == 201, reported.text
    await member.api("POST", f"/spheres/{sphere_id}/read", json={"offset": 3})
    await store.set_join_policy(sphere_id, "approval")
    asker = await node.new_user("asker")
    asked = await asker.api("POST", f"/spheres/{sphere_id}/requests", json={})
    assert asked.status_code == 201, asked.text
    guest = await node.new_user("guest")
    made = await o.request(Invite(sphere_id=sphere_id, user_id=guest.user_id, ref="i"))
    assert isinstance(made, InvitationInfo)
    banned = await node.new_user("banned")
    await owner.api("PUT", f"/spheres/{sphere_id}/bans/{banned.user_id}")
    muted = await o.request(
        Mute(sphere_id=sphere_id, user_id=member.user_id, duration_s=600, ref="m")
    )
    assert isinstance(muted, Ok)
    leaver = await node.new_user("leaver")  # leaves while muted: the mute waits for them
    await owner.add(sphere_id, leaver)
    muted = await o.request(
        Mute(sphere_id=sphere_id, user_id=leaver.user_id, duration_s=600, ref="m2")
    )
    assert isinstance(muted, Ok)
    left = await leaver.api("POST", f"/spheres/{sphere_id}/leave")
    assert left.status_code == 200, left.text
    return owner, member, sphere_id


async def follow(client: Client, sphere_id: str) -> None:
    assert isinstance(await client.request(Subscribe(sphere_id=sphere_id, ref="s")), Subscribed)


async def told_of_deletion(client: Client, sphere_id: str) -> None:
    last = await client.expect(Message, sphere_id=sphere_id, deleted=True)
    assert (last.kind, last.privacy) == ("sphere", "public")
    ended = await client.expect(Unsubscribed, sphere_id=sphere_id)
    assert ended.reason == "deleted"


async def gone(client: Client, owner: User, sphere_id: str) -> None:
    """The sphere's id answers exactly as an id that never existed."""
    for probe in (Subscribe, History):
        real = await client.request(probe(sphere_id=sphere_id, ref="r"))
        fake = await client.request(probe(sphere_id="s_doesnotexist00", ref="f"))
        assert (code(real), real.message) == (code(fake), fake.message)  # type: ignore[attr-defined]
    reply = await owner.api("GET", f"/spheres/{sphere_id}/messages")
    assert reply.status_code == 404


async def sphere_deleted_in_server_log(node: ServerProcess, sphere_id: str, owner: User) -> None:
    async with httpx.AsyncClient(
        base_url=node.http_url, headers={"Authorization": f"Bearer {node.admin_token}"}
    ) as http:
        entries = (await http.get("/api/v1/admin/audit", timeout=TIMEOUT_S)).json()["entries"]
    deleted = [e for e in entries if e["action"] == "sphere_deleted"]
    assert len(deleted) == 1 and deleted[0]["detail"] == sphere_id, deleted
    assert deleted[0]["actor"] == owner.user_id


async def test_deleted_on_sqlite(server: ServerProcess) -> None:
    store = SqliteRows(server.data_dir / "cloison.sqlite3")
    owner, member, sphere_id = await populate(server, store)
    admin = await server.new_user("admin")
    await owner.add(sphere_id, admin, role="admin")
    reader = await server.new_user("reader")  # a non-member reading the public sphere
    clients = [await connect(user, server) for user in (owner, member, reader)]
    for client in clients:
        await follow(client, sphere_id)
    a = await connect(admin, server)
    assert code(await a.request(DeleteSphere(sphere_id=sphere_id, ref="d"))) == "forbidden"
    before = await store.counts(sphere_id)
    done = await clients[0].request(DeleteSphere(sphere_id=sphere_id, ref="d"))
    assert isinstance(done, Ok), done
    for client in clients:
        await told_of_deletion(client, sphere_id)
    await gone(clients[1], owner, sphere_id)
    await no_row_left(store, sphere_id, before)
    await sphere_deleted_in_server_log(server, sphere_id, owner)


@pytest.mark.redis
@pytest.mark.postgres
async def test_deleted_on_postgres_through_two_gateways(tmp_path: Path) -> None:
    require_shared_redis()
    async with gateways(tmp_path, 2, redis_url=REDIS_URL) as nodes:
        store = PostgresRows(parse_qs(urlsplit(nodes[0].store_url).query)["schema"][0])
        owner, member, sphere_id = await populate(nodes[0], store)
        watchers = [await connect(member, nodes[1]), await connect(owner, nodes[0])]
        for client in watchers:
            await follow(client, sphere_id)
        before = await store.counts(sphere_id)
        deleting = await connect(owner, nodes[0])
        assert isinstance(await deleting.request(DeleteSphere(sphere_id=sphere_id, ref="d")), Ok)
        for client in watchers:  # on the other node too, through the broker
            await told_of_deletion(client, sphere_id)
        await gone(watchers[0], owner, sphere_id)
        again = await deleting.request(DeleteSphere(sphere_id=sphere_id, ref="d2"))
        assert code(again) == "not_found"
        await no_row_left(store, sphere_id, before)
        await sphere_deleted_in_server_log(nodes[0], sphere_id, owner)


async def test_subscribers_are_told_when_the_last_event_is_lost(server: ServerProcess) -> None:
    """A sphere gone from the store without its last event reaching this node (a broker that
    lost it: here, rows deleted behind the server's back) still ends its subscriptions, at the
    next reconciliation of the node's channels with the store."""
    owner = await server.new_user("owner")
    sphere_id = await owner.create_sphere("doomed")
    o = await connect(owner, server)
    await follow(o, sphere_id)
    async with aiosqlite.connect(server.data_dir / "cloison.sqlite3") as db:
        await db.execute("PRAGMA foreign_keys = ON")
        await db.execute("DELETE FROM spheres WHERE sphere_id = ?", (sphere_id,))
        await db.commit()
    ended = await o.expect(Unsubscribed, sphere_id=sphere_id, timeout_s=RECONCILE_BOUND_S)
    assert ended.reason == "deleted"
