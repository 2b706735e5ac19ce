"""A sphere's export by its administrators, on a real server: the archive holds what the
exporting administrator reads over the API, never an event below their own floor of the
history promise; it is audited in the sphere's log; ``--member-exports off`` leaves it be."""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import Any

from protocol import ExportInfo, ExportSphere
from tests.e2e.conftest import start_server
from tests.e2e.test_export import export_of, history, ok, post
from tests.support import User


def untyped(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events as an archive's lines hold them: without the frame's ``type``."""
    return [{k: v for k, v in m.items() if k != "type"} for m in messages]


async def members_of(user: User, sphere_id: str) -> list[dict[str, Any]]:
    members: list[dict[str, Any]] = []
    after = ""
    while True:
        query = f"?limit=2&after={after}" if after else "?limit=2"
        page = await ok(user, "GET", f"/spheres/{sphere_id}/members{query}")
        members += page["members"]
        if not page.get("next"):
            return members
        after = page["next"]


async def test_a_sphere_export_holds_what_its_administrator_reads(tmp_path: Path) -> None:
    # Member exports off: a sphere's administrators still export their sphere.
    server = start_server(tmp_path, "--member-exports", "off")
    try:
        await exports_within_the_floor(server.new_user)
    finally:
        server.stop()


async def exports_within_the_floor(new_user: Any) -> None:
    owner, admin, member = await new_user("owner"), await new_user("admin"), await new_user("m")
    sphere = await owner.create_sphere("team")  # history: since joining (the default)
    before = [await post(owner, sphere, n, f"before-{n}-secret") for n in range(3)]
    await owner.add(sphere, admin, "admin")
    await owner.add(sphere, member)
    after = [await post(owner, sphere, 10 + n, f"after-{n}") for n in range(3)]
    await post(admin, sphere, 1, "the admin's own")
    # Changes to a post below the admin's floor, and to one above it.
    await ok(
        owner,
        "PUT",
        f"/spheres/{sphere}/messages/{before[0]}",
        json={"message_id": "e0", "body": "before-0-edited-secret"},
    )
    await ok(
        owner,
        "POST",
        f"/spheres/{sphere}/messages/{after[0]}/reactions",
        201,
        json={"message_id": "r0", "emoji": "+1"},
    )
    await ok(owner, "DELETE", f"/spheres/{sphere}/messages/{after[1]}", json={"message_id": "d1"})

    floor = next(
        s["history_from"]
        for s in (await ok(admin, "GET", "/spheres"))["spheres"]
        if s["sphere_id"] == sphere
    )
    assert floor > before[-1]

    # Over WebSocket: what the archive would hold, and nothing written.
    client = await admin.connect()
    info = await client.request(ExportSphere(sphere_id=sphere, ref=client.ref()))
    await client.close()
    assert isinstance(info, ExportInfo)
    audit_before = (await ok(admin, "GET", f"/spheres/{sphere}/audit?limit=200"))["entries"]
    assert "sphere_exported" not in {e["action"] for e in audit_before}

    archive, _ = await export_of(admin, f"/spheres/{sphere}/export")
    manifest = archive["manifest.json"]
    assert (manifest["kind"], manifest["sphere_id"], manifest["requested_by"]) == (
        "sphere",
        sphere,
        admin.user_id,
    )
    assert (manifest["floor"], manifest["until"]) == (info.floor, info.until)
    assert info.floor == floor
    assert manifest["counts"] == manifest["announced"]
    assert manifest["counts"]["events.jsonl"] == info.events
    assert manifest["counts"]["members.jsonl"] == info.members

    # Events: exactly the admin's history pages, none below their floor, no text from there.
    events = archive["events.jsonl"]
    assert events == untyped(await history(admin, sphere))
    assert events and min(e["offset"] for e in events) >= floor
    assert not [e for e in events if e.get("target") is not None and e["target"] < floor]
    raw = str(archive)
    assert "secret" not in raw
    assert next(e for e in events if e["offset"] == after[1])["deleted"] is True
    assert next(e for e in events if e["offset"] == after[0])["reactions"][0]["emoji"] == "+1"

    # Members and the audit log, as the admin lists them (the log with this export's entry).
    assert archive["members.jsonl"] == [
        {k: m[k] for k in ("user_id", "name", "kind", "role")}
        for m in await members_of(admin, sphere)
    ]
    audit = list(
        reversed((await ok(admin, "GET", f"/spheres/{sphere}/audit?limit=200"))["entries"])
    )
    keys = ("seq", "ts_ms", "actor_id", "action", "target_id", "offset", "detail")
    assert [{k: a.get(k) for k in keys} for a in archive["audit.jsonl"]] == [
        {k: a.get(k) for k in keys} for a in audit
    ]
    exported = audit[-1]
    assert (exported["action"], exported["actor_id"], exported["offset"]) == (
        "sphere_exported",
        admin.user_id,
        info.until,
    )
    assert exported["detail"] == (
        f"sphere=1,members={info.members},events={info.events},audit={info.audit_entries + 1}"
    )

    # The owner's floor is the sphere's start: their archive holds what they read.
    whole, _ = await export_of(owner, f"/spheres/{sphere}/export")
    assert whole["events.jsonl"] == untyped(await history(owner, sphere))
    assert {e["offset"] for e in whole["events.jsonl"]} >= set(before)

    # A member holds no ``export`` right; the error is the documented one.
    refused = await member.api("GET", f"/spheres/{sphere}/export")
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"

    # A new charter: the administrator who has not accepted it exports nothing, as they read
    # nothing, until they accept it.
    charter = await ok(owner, "PUT", f"/spheres/{sphere}/charter", json={"text": "be kind"})
    unaccepted = await admin.api("GET", f"/spheres/{sphere}/export")
    assert unaccepted.status_code == 403 and unaccepted.json()["code"] == "charter_required"
    version = {"version": charter["version"]}
    await ok(admin, "POST", f"/spheres/{sphere}/charter/accept", json=version)
    accepted, _ = await export_of(admin, f"/spheres/{sphere}/export")
    assert accepted["manifest.json"]["floor"] == floor


async def test_a_sphere_export_says_where_retention_cut_the_history(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        owner = await server.new_user("owner")
        sphere = await owner.create_sphere("kept a day")
        await ok(owner, "PATCH", f"/spheres/{sphere}", json={"retention_days": 1})
        for n in range(3):
            await post(owner, sphere, n, f"old {n}")
        as_of = datetime.datetime.fromtimestamp(time.time() + 2 * 86_400, datetime.UTC)
        server.cli("retention", "run", "--as-of", as_of.isoformat())
        fresh = await post(owner, sphere, 9, "fresh")

        client = await owner.connect()
        info = await client.request(ExportSphere(sphere_id=sphere, ref=client.ref()))
        await client.close()
        archive, _ = await export_of(owner, f"/spheres/{sphere}/export")
        page = await ok(owner, "GET", f"/spheres/{sphere}/messages?after=0")
        # The archive and the history say it alike: history now begins at the horizon.
        assert isinstance(info, ExportInfo) and info.floor == 0
        assert info.truncated_before == page["truncated_before"] == fresh
        assert archive["manifest.json"]["truncated_before"] == fresh
        assert [e["offset"] for e in archive["events.jsonl"]] == [fresh]
        assert "old" not in str(archive["events.jsonl"])
    finally:
        server.stop()
