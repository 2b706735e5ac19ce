"""Organisations as governed communities, on a real server, over WebSocket and HTTP.

Every server starts with the organisation ``default``, which holds every user the admin
creates, and whose managers are the server's administrators. A *stranger* here is a user the
manager removed from it: for anything of the organisation they get the answer an organisation
that does not exist gets.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
import pytest

from protocol import (
    Ack,
    AddOrgMember,
    CreateSphere,
    ErrorReply,
    Frame,
    GetOrg,
    History,
    HistoryPage,
    Leave,
    ListMembers,
    ListOrgAudit,
    ListOrgMembers,
    ListOrgs,
    ListOrgSpheres,
    ManageSphere,
    MemberList,
    Message,
    Ok,
    OrgAuditList,
    OrgId,
    OrgInfo,
    OrgList,
    OrgMemberList,
    OrgPolicySet,
    OrgQuotaSet,
    OrgSphereList,
    Publish,
    RemoveOrgMember,
    SetOrgRole,
    SphereInfo,
    Subscribe,
    Subscribed,
    Unsubscribed,
    UpdateOrg,
)
from tests.support import Client, ServerProcess, User

ORG = OrgId("default")
MISSING = OrgId("o_missing")


async def call(client: Client, frame: Frame) -> Any:
    return await client.request(dataclasses.replace(frame, ref=client.ref()))  # type: ignore[type-var]


async def ok(client: Client, frame: Frame, kind: type[Frame] = Ok) -> Any:
    reply = await call(client, frame)
    assert isinstance(reply, kind), reply
    return reply


async def refused(client: Client, frame: Frame, code: str) -> ErrorReply:
    reply = await call(client, frame)
    assert isinstance(reply, ErrorReply) and reply.code == code, reply
    return reply


async def admin_client(server: ServerProcess) -> Client:
    return await Client.connect(server.ws_url, server.admin_token)


async def stranger(server: ServerProcess, manager: Client, name: str = "stranger") -> User:
    """A user outside the organisation: created in it, then removed by a manager."""
    user = await server.new_user(name)
    await ok(manager, RemoveOrgMember(org_id=ORG, user_id=user.user_id))
    return user


def org_requests(target: str, sphere_id: str) -> list[Frame]:
    """One request of every organisation operation, about ``ORG``."""
    return [
        GetOrg(org_id=ORG),
        UpdateOrg(org_id=ORG, policies=OrgPolicySet(visitors=False)),
        ListOrgMembers(org_id=ORG, limit=5),
        AddOrgMember(org_id=ORG, user_id=target),
        SetOrgRole(org_id=ORG, user_id=target),
        ListOrgAudit(org_id=ORG, limit=5),
        ListOrgSpheres(org_id=ORG, limit=5),
        ManageSphere(org_id=ORG, sphere_id=sphere_id),
        CreateSphere(name="made", privacy="open", org_id=ORG),
        RemoveOrgMember(org_id=ORG, user_id=target),
    ]


MANAGER_ONLY = {"update_org", "add_org_member", "set_org_role", "list_org_audit"}
MANAGER_ONLY |= {"manage_sphere", "remove_org_member"}


async def test_manager_member_and_stranger_answers(server: ServerProcess) -> None:
    manager = await admin_client(server)
    member_user = await server.new_user("member")
    member = await member_user.connect()
    outsider = await stranger(server, manager)
    out = await outsider.connect()
    target = await server.new_user("target")
    sphere_id = await member_user.create_sphere("members'", "private")
    for frame in org_requests(target.user_id, sphere_id):
        kind = frame.TYPE
        # A stranger: exactly what an organisation that does not exist gets.
        answer = await refused(out, frame, "not_found")
        ghost = await refused(out, dataclasses.replace(frame, org_id=MISSING), "not_found")  # type: ignore[type-var]
        assert (answer.code, answer.message) == (ghost.code, ghost.message), kind
        assert answer.message == "organisation not found"
        as_member = await call(member, frame)
        if kind in MANAGER_ONLY:
            assert isinstance(as_member, ErrorReply) and as_member.code == "forbidden", kind
        else:
            assert not isinstance(as_member, ErrorReply), (kind, as_member)
        as_manager = await call(manager, frame)
        assert not isinstance(as_manager, ErrorReply), (kind, as_manager)
    # The same over HTTP: a stranger's 404 is a missing organisation's.
    for path in ("", "/members", "/audit", "/spheres"):
        foreign = await outsider.api("GET", f"/orgs/{ORG}{path}")
        missing = await outsider.api("GET", f"/orgs/{MISSING}{path}")
        assert foreign.status_code == missing.status_code == 404
        assert foreign.json() == missing.json()
    assert (await member_user.api("GET", f"/orgs/{ORG}/audit")).status_code == 403
    listed = await member_user.api("GET", "/orgs")
    assert listed.status_code == 200
    assert listed.json()["orgs"] == [
        {"org_id": "default", "name": "Default", "role": "member", "suspended": False}
    ]
    assert (await outsider.api("GET", "/orgs")).json()["orgs"] == []


async def test_policies_members_see_and_the_audit_of_each_change(server: ServerProcess) -> None:
    manager = await admin_client(server)
    member = await (await server.new_user("member")).connect()
    changed = await ok(
        manager,
        UpdateOrg(
            org_id=ORG,
            name="Acme",
            policies=OrgPolicySet(
                retention_days=30, email_domains=["acme.example"], quotas=OrgQuotaSet(members=500)
            ),
        ),
        OrgInfo,
    )
    assert changed.org.name == "Acme" and changed.policies.retention_days == 30
    assert changed.policies.quotas.members == 500
    seen = await ok(member, GetOrg(org_id=ORG), OrgInfo)
    assert seen.org.role == "member" and seen.policies.retention_days == 30
    # Quotas and self-registration domains are the managers' business.
    assert seen.policies.quotas is None and seen.policies.email_domains is None
    audit = await ok(manager, ListOrgAudit(org_id=ORG, limit=10), OrgAuditList)
    recent = {(e.action, e.detail) for e in audit.entries[:4]}
    assert recent == {
        ("org_renamed", None),
        ("policy_changed", "retention_days"),
        ("policy_changed", "email_domains"),
        ("policy_changed", "quotas"),
    }
    assert all("acme" not in (e.detail or "") for e in audit.entries)
    async with manager_http(server) as admin:
        bad = await admin.patch(f"/api/v1/orgs/{ORG}", json={"policies": {"erasure": "shred"}})
    assert bad.status_code == 400 and bad.json()["code"] == "bad_frame"


def manager_http(server: ServerProcess) -> httpx.AsyncClient:
    return server.http(server.admin_token)


async def test_the_last_manager_stays(server: ServerProcess) -> None:
    manager = await admin_client(server)
    admin_id = manager.welcome.user_id  # type: ignore[union-attr]
    await refused(manager, SetOrgRole(org_id=ORG, user_id=admin_id, role="member"), "conflict")
    await refused(manager, RemoveOrgMember(org_id=ORG, user_id=admin_id), "conflict")
    second = await server.new_user("second")
    await ok(manager, SetOrgRole(org_id=ORG, user_id=second.user_id, role="manager"))
    await ok(manager, SetOrgRole(org_id=ORG, user_id=admin_id, role="member"))
    other = await second.connect()
    await refused(other, SetOrgRole(org_id=ORG, user_id=second.user_id), "conflict")
    await refused(manager, GetOrg(org_id=MISSING), "not_found")
    nobody = await refused(other, RemoveOrgMember(org_id=ORG, user_id="u_nobody"), "not_found")
    assert nobody.message == "not a member of this organisation"


async def test_directory_pages_searches_and_obeys_its_policy(server: ServerProcess) -> None:
    manager = await admin_client(server)
    member_user = await server.new_user("Zed")
    member = await member_user.connect()
    for name in ("Anna", "anne", "Bob"):
        await server.new_user(name)
    found = await ok(member, ListOrgMembers(org_id=ORG, query="AN"), OrgMemberList)
    assert [m.name for m in found.members] == ["Anna", "anne"]
    first = await ok(member, ListOrgMembers(org_id=ORG, limit=2), OrgMemberList)
    assert first.next is not None
    rest = await ok(member, ListOrgMembers(org_id=ORG, after=first.next), OrgMemberList)
    names = [m.name for m in first.members + rest.members]
    assert names == sorted(names, key=str.lower) and "Zed" in names
    await ok(manager, UpdateOrg(org_id=ORG, policies=OrgPolicySet(directory=False)), OrgInfo)
    off = await refused(member, ListOrgMembers(org_id=ORG), "forbidden")
    assert "directory" in off.message
    await ok(manager, ListOrgMembers(org_id=ORG), OrgMemberList)
    http = await member_user.api("GET", f"/orgs/{ORG}/members", params={"query": "an"})
    assert http.status_code == 403


async def test_quotas_and_the_sphere_type_policy(server: ServerProcess) -> None:
    manager = await admin_client(server)
    member = await (await server.new_user("member")).connect()
    await ok(
        manager,
        UpdateOrg(
            org_id=ORG,
            policies=OrgPolicySet(member_sphere_types=["private"], quotas=OrgQuotaSet(spheres=2)),
        ),
        OrgInfo,
    )
    typed = await refused(member, CreateSphere(name="open", privacy="open"), "forbidden")
    assert "member_sphere_types" in typed.message
    await ok(member, CreateSphere(name="mine", privacy="private"), SphereInfo)
    await ok(manager, CreateSphere(name="theirs", privacy="public", org_id=ORG), SphereInfo)
    full = await refused(member, CreateSphere(name="third", privacy="private"), "quota_exceeded")
    assert "spheres quota (2)" in full.message
    state = await ok(manager, GetOrg(org_id=ORG), OrgInfo)
    members = len((await ok(manager, ListOrgMembers(org_id=ORG), OrgMemberList)).members)
    await ok(
        manager,
        UpdateOrg(org_id=ORG, policies=OrgPolicySet(quotas=OrgQuotaSet(members=members))),
        OrgInfo,
    )
    newcomer = await stranger(server, manager, "newcomer")
    over = await refused(
        manager, AddOrgMember(org_id=ORG, user_id=newcomer.user_id), "quota_exceeded"
    )
    assert "members quota" in over.message
    async with manager_http(server) as admin:
        http = await admin.post(f"/api/v1/orgs/{ORG}/members", json={"user_id": newcomer.user_id})
    assert http.status_code == 403 and http.json()["code"] == "quota_exceeded"
    assert state.policies.quotas.spheres == 2


async def test_global_spheres_follow_the_organisation(server: ServerProcess) -> None:
    manager = await admin_client(server)
    ann_user = await server.new_user("ann")
    ann = await ann_user.connect()
    made = await ok(manager, CreateSphere(name="All hands", privacy="global"), SphereInfo)
    sphere_id = made.sphere.sphere_id
    listed = await ok(ann, ListMembers(sphere_id=sphere_id), MemberList)
    assert ann_user.user_id in {m.user_id for m in listed.members}
    left = await refused(ann, Leave(sphere_id=sphere_id), "forbidden")
    assert "global" in left.message
    assert (await ok(ann, Subscribe(sphere_id=sphere_id), Subscribed)).sphere_id == sphere_id
    newcomer = await stranger(server, manager, "newcomer")
    await ok(manager, AddOrgMember(org_id=ORG, user_id=newcomer.user_id))
    added = await ann.expect(Message, member_id=newcomer.user_id, action="added")
    assert added.action == "added"
    portal = await ok(await newcomer.connect(), ListOrgSpheres(org_id=ORG), OrgSphereList)
    assert [(s.sphere_id, s.role) for s in portal.spheres if s.privacy == "global"] == [
        (sphere_id, "member")
    ]
    await ok(manager, RemoveOrgMember(org_id=ORG, user_id=newcomer.user_id))
    gone = await ann.expect(Message, member_id=newcomer.user_id, action="removed")
    assert gone.role is None


async def test_manage_sphere_is_an_event_members_see(server: ServerProcess) -> None:
    manager = await admin_client(server)
    owner_user = await server.new_user("owner")
    owner = await owner_user.connect()
    sphere_id = await owner_user.create_sphere("team", "private")
    await ok(owner, Subscribe(sphere_id=sphere_id), Subscribed)
    # A manager sees the sphere by name and type in the portal, never its content.
    portal = await ok(manager, ListOrgSpheres(org_id=ORG), OrgSphereList)
    assert [(s.name, s.privacy, s.role) for s in portal.spheres if s.sphere_id == sphere_id] == [
        ("team", "private", None)
    ]
    member_portal = await ok(owner, ListOrgSpheres(org_id=ORG), OrgSphereList)
    assert sphere_id not in {s.sphere_id for s in member_portal.spheres}
    await ok(owner, Publish(sphere_id=sphere_id, message_id="before", body="before"), Ack)
    # Not a member yet: the manager reads nothing of it (a sealed sphere: not found).
    await refused(manager, History(sphere_id=sphere_id), "not_found")
    appointed = await ok(manager, ManageSphere(org_id=ORG, sphere_id=sphere_id), SphereInfo)
    assert appointed.sphere.role == "admin"
    event = await owner.expect(Message, action="appointed")
    assert (event.member_id, event.role) == (manager.welcome.user_id, "admin")  # type: ignore[union-attr]
    # A visible member now, who reads within the history promise: from their appointment on.
    await ok(owner, Publish(sphere_id=sphere_id, message_id="after", body="after"), Ack)
    page = await ok(manager, History(sphere_id=sphere_id), HistoryPage)
    assert [m.body for m in page.messages if m.kind == "post"] == ["after"]
    again = await ok(manager, ManageSphere(org_id=ORG, sphere_id=sphere_id), SphereInfo)
    assert again.sphere.role == "admin"
    audit = await ok(manager, ListOrgAudit(org_id=ORG, limit=1), OrgAuditList)
    assert (audit.entries[0].action, audit.entries[0].target_id) == ("sphere_managed", sphere_id)
    missing = await refused(manager, ManageSphere(org_id=ORG, sphere_id="s_nope"), "not_found")
    assert missing.message == "sphere not found"


async def test_removal_from_the_organisation_ends_live_subscriptions(
    server: ServerProcess,
) -> None:
    manager = await admin_client(server)
    owner_user = await server.new_user("owner")
    bob_user = await server.new_user("bob")
    owner = await owner_user.connect()
    bob = await bob_user.connect()
    spheres = [await owner_user.create_sphere(f"s{n}", "private") for n in range(3)]
    bobs = await bob_user.create_sphere("bob's", "private")
    for sphere_id in spheres:
        await owner_user.add(sphere_id, bob_user)
    for sphere_id in [*spheres, bobs]:
        await ok(bob, Subscribe(sphere_id=sphere_id), Subscribed)
    await ok(manager, RemoveOrgMember(org_id=ORG, user_id=bob_user.user_id))
    ended = set()
    for _ in range(4):
        frame = await bob.expect(Unsubscribed)
        ended.add(frame.sphere_id)
    assert ended == {*spheres, bobs}
    refusal = await refused(
        bob, Publish(sphere_id=spheres[0], message_id="m1", body="hi"), "not_found"
    )
    assert refusal.message == "sphere not found"
    mine = await ok(bob, ListOrgs(), OrgList)
    assert mine.orgs == []
    await refused(bob, GetOrg(org_id=ORG), "not_found")
    await refused(owner, ListOrgAudit(org_id=ORG), "forbidden")


@pytest.mark.parametrize("transport", ["http"])
async def test_org_routes_over_http(server: ServerProcess, transport: str) -> None:
    member = await server.new_user("member")
    async with manager_http(server) as admin:
        info = await admin.get(f"/api/v1/orgs/{ORG}")
        assert info.status_code == 200 and info.json()["org"]["role"] == "manager"
        renamed = await admin.patch(f"/api/v1/orgs/{ORG}", json={"name": "Acme"})
        assert renamed.json()["org"]["name"] == "Acme"
        role = await admin.put(
            f"/api/v1/orgs/{ORG}/members/{member.user_id}", json={"role": "manager"}
        )
        assert role.status_code == 200, role.text
        gone = await admin.delete(f"/api/v1/orgs/{ORG}/members/{member.user_id}")
        assert gone.status_code == 200, gone.text
        back = await admin.post(f"/api/v1/orgs/{ORG}/members", json={"user_id": member.user_id})
        assert back.status_code == 200, back.text
        spheres = await admin.get(f"/api/v1/orgs/{ORG}/spheres", params={"limit": 5})
        assert spheres.status_code == 200 and spheres.json()["type"] == "org_sphere_list"
