"""A working day on a Cloison server, with canaries in every text a person writes.

``workday`` drives one or two gateways the way people do: enrolment, sign-in over WebSocket
and HTTP, spheres of every type, posts, replies, edits, reactions, pins, deletes, history and
threads, read markers and typing, invitations, join requests, charters, reports, bans, mutes,
roles, token rotation, a rename, administrators' acts, audit logs, a retention period, a legal
hold, exports, a sphere deletion and an account deletion. Every
free text (bodies, edits, names, comments, reasons, charters, labels) carries a canary, and
every token secret is one, so a test can look for all of them wherever data could leak: logs,
Redis, network captures.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from protocol import (
    AcceptCharter,
    AcceptInvitation,
    Ack,
    AddMember,
    AnswerRequest,
    Ban,
    CreateSphere,
    Delete,
    DeleteSphere,
    Edit,
    ErrorReply,
    Frame,
    GetThread,
    History,
    Invite,
    ListAudit,
    ListMembers,
    ListMentions,
    ListPins,
    ListReports,
    ListSpheres,
    MarkRead,
    Message,
    Mute,
    Pin,
    Publish,
    React,
    Report,
    RequestJoin,
    SetCharter,
    SetRole,
    SphereInfo,
    Subscribe,
    Typing,
    Unban,
    Unmute,
    UpdateSphere,
)
from tests.support import Client, ServerProcess, User, eventually


def canary(kind: str) -> str:
    """A string that occurs nowhere by chance; ``kind`` says where it was planted."""
    return f"canary{kind}{secrets.token_hex(8)}"


@dataclass
class Canaries:
    """Everything planted, by where it was planted."""

    planted: dict[str, str] = field(default_factory=dict)

    def new(self, kind: str) -> str:
        value = canary(kind)
        self.planted[f"{kind}{len(self.planted)}"] = value
        return value

    def secret(self, token: str) -> None:
        """A token's secret (``clo_<id>_<secret>``): the part that must never be seen again."""
        self.planted[f"secret{len(self.planted)}"] = token.split("_", 2)[2]

    def bodies(self) -> list[str]:
        return [v for k, v in self.planted.items() if k.startswith(("body", "edit"))]

    def found_in(self, data: bytes | str) -> list[str]:
        """The names of the canaries that occur in ``data``."""
        text = data if isinstance(data, str) else data.decode("utf-8", "replace")
        return [name for name, value in self.planted.items() if value in text]


async def ok(client: Client, frame: Frame) -> Frame:
    reply = await client.request(frame)
    assert not isinstance(reply, ErrorReply), (type(frame).__name__, reply)
    return reply


async def post(client: Client, sphere_id: str, body: str, reply_to: int | None = None) -> int:
    reply = await ok(
        client,
        Publish(
            sphere_id=sphere_id,
            message_id=secrets.token_hex(8),
            body=body,
            reply_to=reply_to,
            ref=client.ref(),
        ),
    )
    assert isinstance(reply, Ack)
    return reply.offset


async def new_sphere(client: Client, name: str, **settings: object) -> str:
    reply = await ok(client, CreateSphere(name=name, ref=client.ref(), **settings))  # type: ignore[arg-type]
    assert isinstance(reply, SphereInfo)
    return str(reply.sphere.sphere_id)


async def workday(nodes: Sequence[ServerProcess], canaries: Canaries) -> None:
    """The scenario; ``nodes[0]`` serves the owner, the last node everyone else."""
    first, last = nodes[0], nodes[-1]
    canaries.secret(first.admin_token)
    alice = await first.new_user(canaries.new("name"))
    bob = await first.new_user(canaries.new("name"))
    carol = await first.new_user(canaries.new("name"))
    bot = await first.new_user(canaries.new("name"), bot=True)
    for user in (alice, bob, carol, bot):
        canaries.secret(user.token)

    a = await Client.connect(first.ws_url, alice.token)
    b = await Client.connect(last.ws_url, bob.token, "msgpack")
    c = await Client.connect(last.ws_url, carol.token)

    # A private sphere with a charter; bob joins, subscribed on the other node.
    team = await new_sphere(a, canaries.new("spherename"))
    await ok(a, AddMember(sphere_id=team, user_id=bob.user_id, role="member", ref=a.ref()))
    await ok(a, AddMember(sphere_id=team, user_id=bot.user_id, role="member", ref=a.ref()))
    await ok(a, SetCharter(sphere_id=team, text=canaries.new("charter"), ref=a.ref()))
    await ok(b, AcceptCharter(sphere_id=team, version=1, ref=b.ref()))
    await ok(a, Subscribe(sphere_id=team, ref=a.ref()))
    await ok(b, Subscribe(sphere_id=team, ref=b.ref()))

    root = await post(a, team, canaries.new("body"))
    assert (await b.expect(Message, offset=root)).offset == root  # carried between the nodes
    await b.send(Typing(sphere_id=team))
    answer = await post(b, team, canaries.new("body"), reply_to=root)
    await post(b, team, f"@{alice.user_id} " + canaries.new("body"))
    await ok(
        a, Edit(sphere_id=team, message_id="e1", target=root, body=canaries.new("edit"), ref="e")
    )
    await ok(b, React(sphere_id=team, message_id="r1", target=root, emoji="+1", ref=b.ref()))
    await ok(a, Pin(sphere_id=team, message_id="p1", target=root, ref=a.ref()))
    doomed = await post(b, team, canaries.new("body"))
    await ok(b, Delete(sphere_id=team, message_id="d1", target=doomed, ref=b.ref()))
    for reader, frame in (
        (b, History(sphere_id=team, ref="h1")),
        (b, GetThread(sphere_id=team, root=root, ref="t1")),
        (a, ListPins(sphere_id=team, ref="p")),
        (a, ListMentions(ref="m")),
        (b, MarkRead(sphere_id=team, offset=answer, ref="mr")),
        (b, ListSpheres(ref="ls")),
        (a, ListMembers(sphere_id=team, ref="lm")),
        (a, SetRole(sphere_id=team, user_id=bob.user_id, role="publisher", ref="sr")),
        (a, Mute(sphere_id=team, user_id=bob.user_id, duration_s=60, ref="mu")),
        (a, Unmute(sphere_id=team, user_id=bob.user_id, ref="um")),
    ):
        await ok(reader, frame)
    await ok(
        b,
        Report(
            sphere_id=team, target=root, reason="other", comment=canaries.new("comment"), ref="rp"
        ),
    )
    await ok(a, ListReports(sphere_id=team, ref="lr"))

    # Carol is invited, accepts, and is banned with a reason, then let back in.
    made = await ok(a, Invite(sphere_id=team, user_id=carol.user_id, ref="i"))
    await ok(c, AcceptInvitation(invitation_id=made.invitation.invitation_id, ref="ai"))  # type: ignore[attr-defined]
    await ok(a, Ban(sphere_id=team, user_id=carol.user_id, reason=canaries.new("reason"), ref="bn"))
    await ok(a, Unban(sphere_id=team, user_id=carol.user_id, ref="ub"))
    await ok(a, ListAudit(sphere_id=team, ref="la"))

    # An open sphere entered on approval; a public one read from outside.
    club = await new_sphere(a, canaries.new("spherename"), privacy="open", join_policy="approval")
    await ok(c, RequestJoin(sphere_id=club, comment=canaries.new("comment"), ref="rj"))
    await ok(a, AnswerRequest(sphere_id=club, user_id=carol.user_id, accept=True, ref="ar"))
    await post(c, club, canaries.new("body"))
    town = await new_sphere(a, canaries.new("spherename"), privacy="public", join_policy="free")
    await post(a, town, canaries.new("body"))
    await ok(c, History(sphere_id=town, ref="ht"))
    await ok(a, UpdateSphere(sphere_id=town, name=canaries.new("spherename"), ref="us"))
    await ok(a, DeleteSphere(sphere_id=town, ref="ds"))

    # Over HTTP: a post, a rename, a labelled token rotated, administrators' acts.
    reply = await alice.api(
        "POST", f"/spheres/{team}/messages", json={"message_id": "h1", "body": canaries.new("body")}
    )
    assert reply.status_code == 201, reply.text
    assert (await bob.api("PATCH", "/me", json={"name": canaries.new("name")})).status_code == 200
    issued = await carol.api("POST", "/me/tokens", json={"label": canaries.new("label")})
    assert issued.status_code == 201, issued.text
    canaries.secret(issued.json()["token"])
    second = User(carol.server, carol.user_id, carol.name, issued.json()["token"])
    assert (await second.api("GET", "/me")).status_code == 200
    rotated = await second.api("POST", "/me/tokens", json={"revoke_current": True})
    assert rotated.status_code == 201, rotated.text
    canaries.secret(rotated.json()["token"])
    async with first.http(first.admin_token) as admin:
        for method, path in (
            ("GET", "/api/v1/admin/users"),
            ("GET", f"/api/v1/admin/users/{bot.user_id}/tokens"),
            ("POST", f"/api/v1/admin/users/{bot.user_id}/disable"),
            ("POST", f"/api/v1/admin/users/{bot.user_id}/enable"),
            ("GET", "/api/v1/admin/audit"),
        ):
            answer_ = await admin.request(method, path)
            assert answer_.status_code == 200, (path, answer_.text)
    # A retention period for the club, and a legal hold on the team with a reason, lifted.
    await ok(a, UpdateSphere(sphere_id=club, retention_days=30, ref="rd"))
    async with first.http(first.admin_token) as admin:
        hold = f"/api/v1/admin/spheres/{team}/legal-hold"
        reply = await admin.put(hold, json={"reason": canaries.new("reason")})
        assert reply.status_code == 200, reply.text
        refused = await b.request(Delete(sphere_id=team, message_id="dh", target=answer, ref="dh"))
        assert isinstance(refused, ErrorReply) and refused.code == "legal_hold", refused
        for method, path in (("GET", f"/api/v1/admin/spheres/{team}/retention"), ("DELETE", hold)):
            reply = await admin.request(method, path)
            assert reply.status_code == 200, (path, reply.text)

    # Archives: bob's own, the team's by its owner, carol's by an administrator.
    for user, path in ((bob, "/me/export"), (alice, f"/spheres/{team}/export")):
        archive = await user.api("GET", path)
        assert archive.status_code == 200, (path, archive.text)
        assert archive.content.startswith(b"PK")  # a zip
    async with first.http(first.admin_token) as admin:
        archive = await admin.get(f"/api/v1/admin/users/{carol.user_id}/export")
        assert archive.status_code == 200, archive.text

    # Dave posts, then deletes his account; the job erases what he wrote.
    dave = await first.new_user(canaries.new("name"))
    canaries.secret(dave.token)
    await ok(a, AddMember(sphere_id=team, user_id=dave.user_id, role="member", ref=a.ref()))
    await ok(a, SetCharter(sphere_id=team, text=canaries.new("charter"), ref=a.ref()))
    d = await Client.connect(last.ws_url, dave.token)
    await ok(d, AcceptCharter(sphere_id=team, version=2, ref=d.ref()))
    await post(d, team, canaries.new("body"))
    await d.close()
    reply = await dave.api("DELETE", "/me", json={"confirm": dave.user_id})
    assert reply.status_code == 202, reply.text
    async with first.http(first.admin_token) as admin:

        async def erased() -> bool:
            job = await admin.get(f"/api/v1/admin/users/{dave.user_id}/deletion")
            return bool(job.json()["state"] == "done")

        await eventually(erased)
    for client in (a, b, c):
        await client.close()
