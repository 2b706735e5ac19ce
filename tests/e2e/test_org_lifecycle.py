"""An organisation's lifecycle through the admin HTTP API and ``cloison org``, against a real
server: create, list and show (administrators only), suspend (sign-in refused to members who
have no other organisation, their sockets closed, subscriptions to its spheres ended on the
node), resume, its export by its managers, and its deletion with every byte of it leaving the
SQLite files."""

from __future__ import annotations

import io
import re
import secrets
import zipfile
from typing import Any

import orjson

from protocol import (
    Auth,
    ErrorReply,
    OrgId,
    Privacy,
    Subscribe,
    Subscribed,
    Unsubscribed,
    UserId,
)
from storage import OrgRole, open_store
from tests.e2e.test_account_deletion import done as account_done, posted
from tests.e2e.test_sessions import admin_api, closed_with
from tests.raw_files import assert_absent_sqlite, assert_absent_text, assert_present_sqlite
from tests.support import Client, ServerProcess, User, eventually

DONE_WITHIN_S = 30.0


def add_user(server: ServerProcess, org_id: str, name: str, *, manager: bool = False) -> User:
    """A user of ``org_id`` only, made by ``cloison org add-user``."""
    out = server.cli("org", "add-user", org_id, name, *(["--manager"] if manager else []))
    user_id = re.search(r"user_id:\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    token = re.search(r"token:\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    return User(server, user_id, name, token)


async def org_sphere(
    server: ServerProcess, org_id: str, owner: User, name: str, *members: User
) -> str:
    """A sphere of ``org_id`` owned by ``owner``, with ``members`` (the store's own call: the
    frames that create a sphere in an organisation are another part's)."""
    store = await open_store(server.store_url or f"sqlite:///{server.data_dir}/cloison.sqlite3")
    try:
        sphere = await store.create_sphere(
            name, Privacy.PRIVATE, UserId(owner.user_id), now_ms=1, org_id=OrgId(org_id)
        )
    finally:
        await store.aclose()
    for member in members:
        await owner.add(sphere.sphere_id, member)
    return sphere.sphere_id


async def join_org(
    server: ServerProcess, org_id: str, user: User, role: OrgRole = OrgRole.MEMBER
) -> None:
    store = await open_store(server.store_url or f"sqlite:///{server.data_dir}/cloison.sqlite3")
    try:
        await store.add_org_member(
            OrgId(org_id), UserId(user.user_id), role, now_ms=1, actor_id="test"
        )
    finally:
        await store.aclose()


async def open_direct(user: User, *others: User) -> str:
    reply = await user.api("POST", "/direct", json={"user_ids": [o.user_id for o in others]})
    assert reply.status_code == 200, reply.text
    return str(reply.json()["sphere"]["sphere_id"])


async def create_org(server: ServerProcess, org_id: str, name: str) -> dict[str, Any]:
    reply = await admin_api(server, "POST", "/admin/orgs", json={"name": name, "org_id": org_id})
    assert reply.status_code == 201, reply.text
    return dict(reply.json())


async def deletion_done(server: ServerProcess, org_id: str) -> dict[str, Any]:
    async def finished() -> bool:
        reply = await admin_api(server, "GET", f"/admin/orgs/{org_id}/deletion")
        return bool(reply.json()["state"] == "done")

    await eventually(finished, DONE_WITHIN_S)
    return dict((await admin_api(server, "GET", f"/admin/orgs/{org_id}/deletion")).json())


async def test_administrators_create_list_and_show_organisations(server: ServerProcess) -> None:
    org = await create_org(server, "acme", "Acme")
    assert org == {"org_id": "acme", "name": "Acme", "created_ms": org["created_ms"],
                   "suspended_ms": None}  # fmt: skip
    again = await admin_api(server, "POST", "/admin/orgs", json={"name": "B", "org_id": "acme"})
    assert again.status_code == 409 and again.json()["code"] == "conflict"
    fresh = await admin_api(server, "POST", "/admin/orgs", json={"name": "Beta"})
    assert fresh.status_code == 201 and fresh.json()["org_id"].startswith("o_")
    for bad in ({}, {"name": ""}, {"name": "x", "org_id": "a b"}, {"name": "x", "extra": 1}):
        reply = await admin_api(server, "POST", "/admin/orgs", json=bad)
        assert reply.status_code == 400 and reply.json()["code"] == "bad_frame", bad
    page = (await admin_api(server, "GET", "/admin/orgs", params={"limit": 2})).json()
    assert [o["org_id"] for o in page["orgs"]] == ["acme", "default"]
    assert page["next_after"] == "default"
    rest = await admin_api(server, "GET", "/admin/orgs", params={"after": "default"})
    assert [o["org_id"] for o in rest.json()["orgs"]] == [fresh.json()["org_id"]]
    ada = add_user(server, "acme", "Ada", manager=True)
    shown = (await admin_api(server, "GET", "/admin/orgs/acme")).json()
    assert shown["members"] == 1 and shown["spheres"] == 0 and shown["deletion"] is None
    # Administrators only; an unknown organisation is not found.
    for method, path in (("GET", "/admin/orgs"), ("POST", "/admin/orgs/acme/suspend")):
        assert (await ada.api(method, path)).status_code == 403
    assert (await admin_api(server, "GET", "/admin/orgs/nope")).status_code == 404
    assert "acme\trunning\tAcme" in server.cli("org", "list")


async def test_suspension_refuses_sign_in_and_ends_what_is_open(server: ServerProcess) -> None:
    await create_org(server, "acme", "Acme")
    ada = add_user(server, "acme", "Ada", manager=True)
    cyd = await server.new_user("Cyd")  # of the default organisation too: still signs in
    await join_org(server, "acme", cyd, OrgRole.MANAGER)
    sphere_id = await org_sphere(server, "acme", ada, "Plans", cyd)
    ada_live, cyd_live = await ada.connect(), await cyd.connect()
    for client in (ada_live, cyd_live):
        reply = await client.request(Subscribe(sphere_id=sphere_id, ref="s"))
        assert isinstance(reply, Subscribed), reply

    reply = await admin_api(server, "POST", "/admin/orgs/acme/suspend")
    assert reply.status_code == 200 and reply.json()["suspended_ms"] is not None
    assert await closed_with(ada_live) == (4500, "organisation suspended")
    await cyd_live.expect(Unsubscribed, sphere_id=sphere_id, reason="access_revoked")
    assert (await ada.api("GET", "/me")).status_code == 401
    refused = await Client.connect(server.ws_url, None)
    await refused.send(Auth(token=ada.token, protocol=1))
    assert isinstance(await refused.recv(), ErrorReply)
    assert await closed_with(refused) == (4500, "organisation suspended")
    assert (await cyd.api("GET", "/me")).status_code == 200
    export = await cyd.api("GET", "/orgs/acme/export")  # its data waits, but for the admins
    assert export.status_code == 403 and export.json()["message"] == "the organisation is suspended"
    assert (await admin_api(server, "GET", "/admin/orgs/acme/export")).status_code == 200
    again = await admin_api(server, "POST", "/admin/orgs/acme/suspend")  # idempotent
    assert again.json()["suspended_ms"] == reply.json()["suspended_ms"]

    resumed = await admin_api(server, "POST", "/admin/orgs/acme/resume")
    assert resumed.status_code == 200 and resumed.json()["suspended_ms"] is None
    assert (await ada.api("GET", "/me")).status_code == 200
    await ada.connect()
    audit = (await admin_api(server, "GET", "/admin/audit")).json()["entries"]
    actions = [(e["action"], e["detail"]) for e in audit]
    assert ("org_suspended", "acme") in actions and ("org_resumed", "acme") in actions


async def test_a_suspension_from_the_command_line_reaches_the_node(server: ServerProcess) -> None:
    """The command reaches no server: the node learns of it from the session changes."""
    await create_org(server, "acme", "Acme")
    ada = add_user(server, "acme", "Ada", manager=True)
    cyd = await server.new_user("Cyd")
    await join_org(server, "acme", cyd)
    sphere_id = await org_sphere(server, "acme", ada, "Plans", cyd)
    ada_live, cyd_live = await ada.connect(), await cyd.connect()
    reply = await cyd_live.request(Subscribe(sphere_id=sphere_id, ref="s"))
    assert isinstance(reply, Subscribed), reply
    assert "suspended" in server.cli("org", "suspend", "acme")
    assert await closed_with(ada_live) == (4500, "organisation suspended")
    await cyd_live.expect(Unsubscribed, sphere_id=sphere_id, reason="access_revoked")
    assert "running" in server.cli("org", "resume", "acme")
    assert (await ada.api("GET", "/me")).status_code == 200


def _archive(reply: Any) -> tuple[zipfile.ZipFile, dict[str, Any]]:
    assert reply.status_code == 200, reply.text
    archive = zipfile.ZipFile(io.BytesIO(reply.content))
    return archive, orjson.loads(archive.read("manifest.json"))


def _lines(archive: zipfile.ZipFile, name: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in archive.read(name).splitlines()]


async def test_managers_export_everything_the_organisation_owns(server: ServerProcess) -> None:
    await create_org(server, "acme", "Acme")
    ada = add_user(server, "acme", "Ada", manager=True)
    bea = add_user(server, "acme", "Bea")
    sphere_id = await org_sphere(server, "acme", ada, "Plans", bea)
    await posted(await bea.connect(), sphere_id, ["first", "second"])
    stranger = await server.new_user("Stranger")
    # A private conversation in the organisation: never in its export by default.
    secret = secrets.token_hex(16)
    direct = await open_direct(ada, bea)
    await posted(await bea.connect(), direct, [secret])

    archive, manifest = _archive(await ada.api("GET", "/orgs/acme/export"))
    assert manifest["kind"] == "organisation" and manifest["org_id"] == "acme"
    assert manifest["private_messages"] == "excluded" and manifest["spheres"] == 1
    assert manifest["spheres_left_out"] == 1
    assert not [name for name in archive.namelist() if direct in name]
    assert all(secret.encode() not in archive.read(name) for name in archive.namelist())
    assert manifest["counts"] == manifest["announced"]
    [org] = _lines(archive, "organisation.json")
    assert org["name"] == "Acme" and org["policies"]["export_private_messages"] is False
    members = _lines(archive, "members.jsonl")
    assert {(m["name"], m["role"]) for m in members} == {("Ada", "manager"), ("Bea", "member")}
    events = _lines(archive, f"spheres/{sphere_id}/events.jsonl")
    assert [e["body"] for e in events if e["kind"] == "post"] == ["first", "second"]
    assert {m["name"] for m in _lines(archive, f"spheres/{sphere_id}/members.jsonl")} == {
        "Ada",
        "Bea",
    }
    audit = _lines(archive, "audit.jsonl")
    assert audit[0]["action"] == "org_created" and audit[-1]["action"] == "org_exported"
    # Its members see that their sphere's history left in an export.
    sphere_audit = _lines(archive, f"spheres/{sphere_id}/audit.jsonl")
    assert sphere_audit[-1]["action"] == "sphere_exported"

    # A member may not; to a stranger the organisation does not exist.
    assert (await bea.api("GET", "/orgs/acme/export")).status_code == 403
    for path in ("/orgs/acme/export", "/orgs/nope/export"):
        reply = await stranger.api("GET", path)
        assert reply.status_code == 404 and reply.json()["message"] == "organisation not found"
    admin_archive, _ = _archive(await admin_api(server, "GET", "/admin/orgs/acme/export"))
    assert f"spheres/{sphere_id}/events.jsonl" in admin_archive.namelist()
    out = server.data_dir / "acme.zip"
    server.cli("org", "export", "acme", "--out", str(out))
    assert "organisation.json" in zipfile.ZipFile(out).namelist()


async def test_a_deleted_organisation_leaves_no_byte_of_it_in_the_sqlite_files(
    server: ServerProcess,
) -> None:
    org_name, sphere_name, body, member_name = (secrets.token_hex(16) for _ in range(4))
    await create_org(server, "acme", org_name)
    ada = add_user(server, "acme", member_name, manager=True)
    cyd = await server.new_user("Cyd")  # of another organisation too: kept
    await join_org(server, "acme", cyd)
    sphere_id = await org_sphere(server, "acme", ada, sphere_name, cyd)
    await posted(await ada.connect(), sphere_id, [body, "second"])
    bea = add_user(server, "acme", secrets.token_hex(8))
    private = secrets.token_hex(16)
    await posted(await bea.connect(), await open_direct(bea, ada), [private])
    canaries = [text.encode() for text in (org_name, sphere_name, body, member_name, private)]
    for canary in canaries:  # the check can fail: the bytes are there
        assert_present_sqlite(server.data_dir, canary)

    reply = await admin_api(server, "DELETE", "/admin/orgs/acme")
    assert reply.status_code == 202 and reply.json()["state"] in ("pending", "done")
    job = await deletion_done(server, "acme")
    assert job["spheres_deleted"] == 2 and job["accounts_handed_over"] == 2
    await account_done(server, ada.user_id)
    await account_done(server, bea.user_id)
    for canary in canaries:
        assert_absent_sqlite(server.data_dir, canary)
        assert_absent_text(server.log, canary)

    assert (await admin_api(server, "GET", "/admin/orgs/acme")).status_code == 404
    assert (await cyd.api("GET", "/me")).status_code == 200
    taken = await admin_api(server, "POST", "/admin/orgs", json={"name": "A", "org_id": "acme"})
    assert taken.status_code == 409
    audit = (await admin_api(server, "GET", "/admin/audit")).json()["entries"]
    deleted = [e for e in audit if e["action"] == "org_deleted"]
    assert len(deleted) == 1 and deleted[0]["detail"].startswith("acme ")
    refused = await admin_api(server, "DELETE", "/admin/orgs/default")
    assert refused.status_code == 409
