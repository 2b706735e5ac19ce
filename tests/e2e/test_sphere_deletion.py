"""Deleting a sphere: every row of it goes, in one transaction; its subscribers on every node
are told; its id then answers as an id that never existed; the server's audit log keeps it."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiosqlite
import asyncpg
import httpx
import pytest

from protocol import (
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
    Subscribe,
    Subscribed,
    Unsubscribed,
)
from tests.e2e.test_cluster import connect, gateways
from tests.services import POSTGRES_URL, REDIS_URL, TIMEOUT_S, require_shared_redis
from tests.support import Client, ServerProcess, User


def code(reply: Frame) -> str:
    assert isinstance(reply, ErrorReply), reply
    return reply.code


async def populate(node: ServerProcess) -> tuple[User, User, str]:
    """A sphere with members, posts, a read marker, an invitation, a ban, a mute and audit
    entries: something of it in every table that holds a sphere's rows."""
    owner = await node.new_user("owner")
    member = await node.new_user("member")
    sphere_id = await owner.create_sphere("doomed", privacy="public")
    await owner.add(sphere_id, member)
    o = await connect(owner, node)
    for n in range(3):
        await o.request(Publish(sphere_id=sphere_id, message_id=f"p{n}", body="x", ref=f"p{n}"))
    await member.api("POST", f"/spheres/{sphere_id}/read", json={"offset": 3})
    guest = await node.new_user("guest")
    made = await o.request(Invite(sphere_id=sphere_id, user_id=guest.user_id, ref="i"))
    assert isinstance(made, InvitationInfo)
    banned = await node.new_user("banned")
    await owner.api("PUT", f"/spheres/{sphere_id}/bans/{banned.user_id}")
    muted = await o.request(
        Mute(sphere_id=sphere_id, user_id=member.user_id, duration_s=600, ref="m")
    )
    assert isinstance(muted, Ok)
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
    owner, member, sphere_id = await populate(server)
    admin = await server.new_user("admin")
    await owner.add(sphere_id, admin, role="admin")
    reader = await server.new_user("reader")  # a non-member reading the public sphere
    clients = [await connect(user, server) for user in (owner, member, reader)]
    for client in clients:
        await follow(client, sphere_id)
    a = await connect(admin, server)
    assert code(await a.request(DeleteSphere(sphere_id=sphere_id, ref="d"))) == "forbidden"
    done = await clients[0].request(DeleteSphere(sphere_id=sphere_id, ref="d"))
    assert isinstance(done, Ok), done
    for client in clients:
        await told_of_deletion(client, sphere_id)
    await gone(clients[1], owner, sphere_id)
    async with aiosqlite.connect(server.data_dir / "cloison.sqlite3") as db:
        tables = [
            row[0]
            for row in await db.execute_fetchall(
                "SELECT m.name FROM sqlite_master AS m, pragma_table_info(m.name) AS c"
                " WHERE m.type = 'table' AND c.name = 'sphere_id'"
            )
        ]
        assert {"spheres", "events", "members", "invitations", "bans"} <= set(tables)
        for table in tables:
            rows = await db.execute_fetchall(
                f"SELECT count(*) FROM {table} WHERE sphere_id = ?",
                (sphere_id,),
            )
            assert next(iter(rows))[0] == 0, table
    await sphere_deleted_in_server_log(server, sphere_id, owner)


@pytest.mark.redis
@pytest.mark.postgres
async def test_deleted_on_postgres_through_two_gateways(tmp_path: Path) -> None:
    require_shared_redis()
    async with gateways(tmp_path, 2, redis_url=REDIS_URL) as nodes:
        owner, member, sphere_id = await populate(nodes[0])
        watchers = [await connect(member, nodes[1]), await connect(owner, nodes[0])]
        for client in watchers:
            await follow(client, sphere_id)
        deleting = await connect(owner, nodes[0])
        assert isinstance(await deleting.request(DeleteSphere(sphere_id=sphere_id, ref="d")), Ok)
        for client in watchers:  # on the other node too, through the broker
            await told_of_deletion(client, sphere_id)
        await gone(watchers[0], owner, sphere_id)
        again = await deleting.request(DeleteSphere(sphere_id=sphere_id, ref="d2"))
        assert code(again) == "not_found"
        schema = parse_qs(urlsplit(nodes[0].store_url).query)["schema"][0]
        db = await asyncpg.connect(POSTGRES_URL, timeout=TIMEOUT_S)
        try:
            tables = [
                row[0]
                for row in await db.fetch(
                    "SELECT table_name FROM information_schema.columns"
                    " WHERE table_schema = $1 AND column_name = 'sphere_id'",
                    schema,
                )
            ]
            assert {"spheres", "events", "members", "invitations", "bans"} <= set(tables)
            for table in tables:
                count = await db.fetchval(
                    f"SELECT count(*) FROM {schema}.{table} WHERE sphere_id = $1",
                    sphere_id,
                )
                assert count == 0, table
        finally:
            await db.close(timeout=TIMEOUT_S)
        await sphere_deleted_in_server_log(nodes[0], sphere_id, owner)
