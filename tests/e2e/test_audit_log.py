"""One scenario makes every kind of governance act, over the HTTP API: the sphere's audit log
then holds an entry of every ``AuditAction`` — so a new action cannot go untested — each with
its actor and time, and no message body anywhere."""

from __future__ import annotations

import datetime
import time
from typing import Any

from storage import AuditAction
from tests.support import ServerProcess, User, eventually

BODY = "words the audit log must never hold"


async def ok(user: User, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    reply = await user.api(method, path, json=body if body is not None else {})
    assert reply.status_code in (200, 201, 204), (method, path, reply.text)
    return reply.json() if reply.content else None


async def test_every_governance_act_is_in_the_audit_log(server: ServerProcess) -> None:
    owner, heir, guest, asker, other = [
        await server.new_user(name) for name in ("owner", "heir", "guest", "asker", "other")
    ]
    created = await ok(
        owner, "POST", "/spheres", {"name": "club", "privacy": "open", "history": "full"}
    )
    sphere = "/spheres/" + created["sphere"]["sphere_id"]
    await ok(owner, "PATCH", sphere, {"history": "since_joining"})  # narrowing: always allowed
    await ok(owner, "PATCH", sphere, {"name": "the club"})
    await ok(owner, "PATCH", sphere, {"privacy": "public"})
    charter = await ok(owner, "PUT", sphere + "/charter", {"text": "be kind"})

    await ok(owner, "POST", sphere + "/members", {"user_id": heir.user_id})
    await ok(heir, "POST", sphere + "/charter/accept", {"version": charter["version"]})
    await ok(owner, "PUT", f"{sphere}/members/{heir.user_id}", {"role": "publisher"})
    await ok(owner, "POST", sphere + "/members", {"user_id": other.user_id})
    await ok(owner, "DELETE", f"{sphere}/members/{other.user_id}")

    revoked = await ok(owner, "POST", sphere + "/invitations", {"user_id": guest.user_id})
    await ok(owner, "DELETE", "/invitations/" + revoked["invitation"]["invitation_id"])
    declined = await ok(owner, "POST", sphere + "/invitations", {"user_id": guest.user_id})
    await ok(guest, "POST", f"/invitations/{declined['invitation']['invitation_id']}/decline")
    accepted = await ok(owner, "POST", sphere + "/invitations", {"user_id": guest.user_id})
    await ok(guest, "POST", f"/invitations/{accepted['invitation']['invitation_id']}/accept")

    await ok(owner, "PATCH", sphere, {"join_policy": "approval"})
    await ok(asker, "POST", sphere + "/requests", {"comment": "may I?"})
    await ok(asker, "POST", sphere + "/requests/withdraw")
    await ok(asker, "POST", sphere + "/requests")
    await ok(owner, "POST", f"{sphere}/requests/{asker.user_id}", {"accept": True})
    await ok(other, "POST", sphere + "/requests")
    await ok(owner, "POST", f"{sphere}/requests/{other.user_id}", {"accept": False})

    await ok(owner, "PUT", f"{sphere}/bans/{other.user_id}", {"reason": "spam"})
    await ok(owner, "DELETE", f"{sphere}/bans/{other.user_id}")
    await ok(owner, "PUT", f"{sphere}/mutes/{guest.user_id}", {"duration_s": 600})
    await ok(owner, "DELETE", f"{sphere}/mutes/{guest.user_id}")

    await ok(guest, "POST", sphere + "/charter/accept", {"version": charter["version"]})
    posted = await ok(heir, "POST", sphere + "/messages", {"message_id": "m1", "body": BODY})
    target = f"{sphere}/messages/{posted['offset']}"
    await ok(owner, "POST", target + "/pin", {"message_id": "p1"})
    await ok(owner, "POST", target + "/unpin", {"message_id": "p2"})
    await ok(guest, "POST", target + "/reports", {"reason": "abusive", "comment": "rude"})
    await ok(owner, "DELETE", target, {"message_id": "d1"})
    await ok(owner, "POST", sphere + "/transfer", {"user_id": heir.user_id})
    async with server.http(server.admin_token) as http:
        # The server administrator manages the default organisation: appointed visibly.
        managed = await http.post(f"/api/v1/orgs/default{sphere}/manage")
        assert managed.status_code == 200, managed.text
        assert (await http.delete(f"/api/v1/admin/users/{guest.user_id}")).status_code == 202

        async def deleted() -> bool:
            reply = await http.get(f"/api/v1/admin/users/{guest.user_id}/deletion")
            return bool(reply.json()["state"] == "done")

        await eventually(deleted)
    archive = await heir.api("GET", sphere + "/export")
    assert archive.status_code == 200 and archive.headers["content-type"] == "application/zip"

    await ok(heir, "PATCH", sphere, {"retention_days": 1})
    async with server.http(server.admin_token) as admin:
        hold = f"/api/v1/admin{sphere}/legal-hold"
        assert (await admin.put(hold, json={"reason": "inquiry"})).status_code == 200
        assert (await admin.delete(hold)).status_code == 200
    in_two_days = datetime.datetime.fromtimestamp(time.time() + 2 * 86_400, datetime.UTC)
    server.cli("retention", "run", "--as-of", in_two_days.isoformat())  # retention_applied

    entries: list[dict[str, Any]] = []
    before = ""
    while True:
        page = await ok(heir, "GET", f"{sphere}/audit?limit=200{before}")
        entries += page["entries"]
        if not page["has_more"]:
            break
        before = f"&before={entries[-1]['seq']}"
    assert {entry["action"] for entry in entries} == {action.value for action in AuditAction}
    assert all(entry["actor_id"] and entry["ts_ms"] > 0 for entry in entries)
    assert [entry["seq"] for entry in entries] == sorted(
        (entry["seq"] for entry in entries), reverse=True
    )
    assert BODY not in str(entries)
    # Ordinary members read no audit log.
    refused = await asker.api("GET", f"{sphere}/audit")
    assert refused.status_code == 403
