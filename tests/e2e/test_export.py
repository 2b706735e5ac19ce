"""A user's export, on a real server: its contents are what the user (and, for what only
administrators see, the administrators) read over the API; the policy switch; the audit."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import orjson

from server.privacy.export import MEMBER_EXPORTS_OFF
from server.privacy.streaming import COUNTS_HEADER, ITEMS_HEADER
from tests.e2e.conftest import start_server
from tests.support import ServerProcess, User

TIMEOUT_S = 30.0
CLI = (sys.executable, "-m", "server", "export")


async def ok(user: User, method: str, path: str, status: int = 200, **kw: Any) -> Any:
    reply = await user.api(method, path, **kw)
    assert reply.status_code == status, (path, reply.text)
    return reply.json() if reply.content else None


async def post(user: User, sphere_id: str, n: int, body: str, **kw: Any) -> int:
    ack = await ok(
        user,
        "POST",
        f"/spheres/{sphere_id}/messages",
        201,
        json={"message_id": f"{user.name}-{n}", "body": body, **kw},
    )
    return int(ack["offset"])


def files_named(folder: Path, prefix: str) -> list[Path]:
    return sorted(folder.glob(prefix + "*"))


def read_archive(data: bytes) -> dict[str, Any]:
    """Each member: the manifest and profile as documents, the rest as lists of lines."""
    out: dict[str, Any] = {}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        for name in archive.namelist():
            raw = archive.read(name)
            if name.endswith(".jsonl"):
                out[name] = [orjson.loads(line) for line in raw.splitlines()]
            else:
                out[name] = orjson.loads(raw)
    return out


async def export_of(user: User, path: str = "/me/export") -> tuple[dict[str, Any], Any]:
    async with asyncio.timeout(TIMEOUT_S):
        reply = await user.api("GET", path)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "application/zip"
    assert reply.headers["content-disposition"].startswith("attachment; filename=")
    return read_archive(reply.content), reply.headers


async def history(user: User, sphere_id: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    after = 0
    while True:
        page = await ok(user, "GET", f"/spheres/{sphere_id}/messages?after={after}&limit=200")
        messages += page["messages"]
        if not page["has_more"]:
            return messages
        after = messages[-1]["offset"]


async def admin_audit(server: ServerProcess) -> list[dict[str, Any]]:
    async with server.http(server.admin_token) as admin:
        reply = await admin.get("/api/v1/admin/audit", params={"limit": 100})
    return list(reply.json()["entries"])


async def test_an_export_holds_what_the_user_reads_over_the_api(server: ServerProcess) -> None:
    alice = await server.new_user("alice")
    bob = await server.new_user("bob")
    carol = await server.new_user("carol")
    team = await alice.create_sphere("team")
    await alice.add(team, bob)
    first = await post(alice, team, 1, "hello team")
    second = await post(alice, team, 2, "a typo")
    third = await post(alice, team, 3, "to be taken back")
    theirs = await post(bob, team, 1, "hi alice")
    reply = await post(alice, team, 4, "hi bob", reply_to=theirs)
    edit = await ok(
        alice,
        "PUT",
        f"/spheres/{team}/messages/{second}",
        json={"message_id": "alice-e", "body": "no typo"},
    )
    gone = await ok(
        alice, "DELETE", f"/spheres/{team}/messages/{third}", json={"message_id": "alice-d"}
    )
    for target, emoji in ((theirs, "+1"), (theirs, "tada"), (first, "ok")):
        await ok(
            alice,
            "POST",
            f"/spheres/{team}/messages/{target}/reactions",
            201,
            json={"message_id": f"r-{target}-{emoji}", "emoji": emoji},
        )
    await ok(alice, "POST", f"/spheres/{team}/read", json={"offset": theirs})
    await ok(alice, "POST", f"/spheres/{team}/invitations", 201, json={"user_id": carol.user_id})
    # Bob's spheres: one alice asks to join, one she is invited to.
    club = await bob.create_sphere("club", "open")
    await ok(bob, "PATCH", f"/spheres/{club}", json={"join_policy": "approval"})
    await ok(alice, "POST", f"/spheres/{club}/requests", 201, json={"comment": "may I?"})
    den = await bob.create_sphere("den")
    await ok(bob, "POST", f"/spheres/{den}/invitations", 201, json={"user_id": alice.user_id})

    # A sphere she wrote in and left: what she wrote there is hers still.
    left = await bob.create_sphere("left")
    await bob.add(left, alice)
    farewell = await post(alice, left, 9, "goodbye")
    await ok(alice, "POST", f"/spheres/{left}/leave")

    # HEAD would make (and audit) an archive nobody receives: refused.
    for path in ("/me/export", f"/spheres/{team}/export"):
        head = await alice.api("HEAD", path)
        assert head.status_code == 400, path
    archive, headers = await export_of(alice)

    # The manifest counts every line; the headers announced the same before the first byte.
    manifest = archive["manifest.json"]
    assert (manifest["format"], manifest["schema_version"], manifest["kind"]) == (
        "cloison-export",
        1,
        "user",
    )
    assert manifest["user_id"] == manifest["requested_by"] == alice.user_id
    members = {name: len(v) if isinstance(v, list) else 1 for name, v in archive.items()}
    del members["manifest.json"]
    assert manifest["counts"] == members == manifest["announced"]
    assert orjson.loads(headers[COUNTS_HEADER]) == members
    assert int(headers[ITEMS_HEADER]) == sum(members.values())

    # Profile and tokens: as GET /me and GET /me/tokens show them.
    me = await ok(alice, "GET", "/me")
    profile = archive["profile.json"]
    assert {k: profile[k] for k in ("user_id", "name", "kind", "is_admin")} == {
        k: me[k] for k in ("user_id", "name", "kind", "is_admin")
    }
    assert alice.token.rsplit("_", 1)[-1] not in str(archive)  # never a token's secret
    tokens = (await ok(alice, "GET", "/me/tokens"))["tokens"]
    keys = ("token_id", "kind", "label", "created_ms", "expires_ms", "issued_by")
    assert [{k: t[k] for k in keys} for t in archive["tokens.jsonl"]] == [
        {k: t[k] for k in keys} for t in tokens
    ]

    # Memberships and read markers: her sphere list.
    spheres = (await ok(alice, "GET", "/spheres"))["spheres"]
    assert sorted(
        (m["sphere_id"], m["role"], m["history_from"]) for m in archive["memberships.jsonl"]
    ) == sorted((s["sphere_id"], s["role"], s["history_from"]) for s in spheres)
    assert sorted((r["sphere_id"], r["read_offset"]) for r in archive["read_markers.jsonl"]) == (
        sorted((s["sphere_id"], s["read_offset"]) for s in spheres)
    )

    # What she wrote: her posts as the history shows them now, then her edit and delete.
    mine = [m for m in await history(alice, team) if m["author_id"] == alice.user_id]
    mine = [m for m in mine if m["kind"] == "post"]
    written = archive["messages.jsonl"]
    posts = [m for m in written if m["kind"] == "post" and m["sphere_id"] == team]
    shown = ("sphere_id", "offset", "message_id", "ts_ms", "body", "edited_ms", "deleted")
    assert [{k: m.get(k) for k in shown} for m in posts] == [
        {k: m.get(k) for k in shown} for m in mine
    ]
    assert [m["offset"] for m in posts] == [first, second, third, reply]
    assert next(m for m in posts if m["offset"] == reply)["reply_to"] == theirs
    assert next(m for m in posts if m["offset"] == second)["body"] == "no typo"
    assert next(m for m in posts if m["offset"] == third).get("body") is None
    elsewhere = [m for m in written if m["sphere_id"] == left]
    theirs_now = [m for m in await history(bob, left) if m["author_id"] == alice.user_id]
    assert [{k: m.get(k) for k in shown} for m in elsewhere] == [
        {k: m.get(k) for k in shown} for m in theirs_now if m["kind"] == "post"
    ]
    assert [m["offset"] for m in elsewhere] == [farewell]
    changes = [(m["kind"], m["offset"], m["target"]) for m in written if m["kind"] != "post"]
    assert changes == [("edit", edit["offset"], second), ("delete", gone["offset"], third)]
    assert "hi alice" not in orjson.dumps(written).decode()  # bob's words are his

    # Her reactions: those the history's posts show her name under.
    reacted = sorted(
        (team, m["offset"], r["emoji"])
        for m in await history(alice, team)
        for r in m.get("reactions") or []
        if alice.user_id in r["user_ids"]
    )
    assert sorted(
        (r["sphere_id"], r["target"], r["emoji"]) for r in archive["reactions.jsonl"]
    ) == (reacted)

    # Invitations she made (the sphere's list) and received (her list); her join request
    # (the list its administrator reads).
    sent = (await ok(alice, "GET", f"/spheres/{team}/invitations"))["invitations"]
    received = (await ok(alice, "GET", "/invitations"))["invitations"]
    exported = {i["invitation_id"]: i for i in archive["invitations.jsonl"]}
    for invitation, direction in [(i, "sent") for i in sent] + [(i, "received") for i in received]:
        line = exported.pop(invitation["invitation_id"])
        assert line["direction"] == direction
        for key in ("sphere_id", "inviter_id", "invitee_id", "role", "created_ms", "state"):
            assert line[key] == invitation[key]
    assert exported == {}
    requests = (await ok(bob, "GET", f"/spheres/{club}/requests"))["requests"]
    assert [(r["sphere_id"], r["comment"], r["created_ms"]) for r in requests] == [
        (r["sphere_id"], r["comment"], r["created_ms"]) for r in archive["join_requests.jsonl"]
    ]

    # Audit: the server's entries about her (the administrators' log), and the entries of her
    # sphere's log that name her (as its owner reads it), the club's as bob reads it.
    server_lines = [a for a in archive["audit.jsonl"] if a["log"] == "server"]
    about = [
        e
        for e in reversed(await admin_audit(server))
        if alice.user_id in (e["actor"], e["user_id"])
    ]
    assert [{k: v for k, v in a.items() if k != "log"} for a in server_lines] == about
    assert about[-1]["action"] == "data_exported"  # this very export, with its counts
    assert [e["action"] for e in about].count("data_exported") == 1  # HEAD made none
    assert "messages=7" in about[-1]["detail"]
    sphere_lines = [a for a in archive["audit.jsonl"] if a["log"] == "sphere"]
    for reader, sphere_id in ((alice, team), (bob, club), (bob, den)):
        entries = (await ok(reader, "GET", f"/spheres/{sphere_id}/audit?limit=100"))["entries"]
        expected = [
            e for e in reversed(entries) if alice.user_id in (e["actor_id"], e.get("target_id"))
        ]
        got = [a for a in sphere_lines if a["sphere_id"] == sphere_id]
        keys = ("seq", "ts_ms", "actor_id", "action", "offset", "detail")
        assert [{k: a.get(k) for k in keys} for a in got] == [
            {k: e.get(k) for k in keys} for e in expected
        ]
    assert {a["action"] for a in sphere_lines} >= {"invited", "join_requested", "sphere_created"}


async def test_member_exports_off_refuses_users_but_not_administrators(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--member-exports", "off")
    try:
        alice = await server.new_user("alice")
        await post(alice, await alice.create_sphere("mine"), 1, "mine")
        refused = await alice.api("GET", "/me/export")
        assert refused.status_code == 403
        assert refused.json() == {
            "code": "forbidden",
            "message": MEMBER_EXPORTS_OFF,
            "retryable": False,
        }
        before = await admin_audit(server)
        assert not [e for e in before if e["action"] == "data_exported"]  # nothing was exported

        async with server.http(server.admin_token) as admin:
            reply = await admin.get(f"/api/v1/admin/users/{alice.user_id}/export")
            missing = await admin.get("/api/v1/admin/users/u_nobody/export")
        assert reply.status_code == 200
        archive = read_archive(reply.content)
        assert [m["body"] for m in archive["messages.jsonl"]] == ["mine"]
        assert archive["manifest.json"]["user_id"] == alice.user_id
        assert missing.status_code == 404 and missing.json()["code"] == "not_found"
        # Not for anyone else: a user asking for another's archive is no administrator.
        other = await alice.api("GET", f"/admin/users/{alice.user_id}/export")
        assert other.status_code == 403

        entry = next(e for e in await admin_audit(server) if e["action"] == "data_exported")
        assert entry["user_id"] == alice.user_id
        assert entry["actor"] != alice.user_id  # the administrator who exported
        assert entry["detail"].startswith("profile=1,tokens=1,memberships=1,")
        assert "mine" not in entry["detail"]
    finally:
        server.stop()


async def test_the_command_line_downloads_an_archive(server: ServerProcess, tmp_path: Path) -> None:
    alice = await server.new_user("alice")
    team = await alice.create_sphere("team")
    for n in range(3):
        await post(alice, team, n, f"line {n}")
    target = tmp_path / "mine.zip"
    done = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "server",
            "export",
            "--url",
            server.http_url,
            "--token",
            alice.token,
            "-o",
            str(target),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    assert "items announced" in done.stderr and "(3 messages)" in done.stderr
    archive = read_archive(target.read_bytes())
    assert [m["body"] for m in archive["messages.jsonl"]] == ["line 0", "line 1", "line 2"]
    assert not (tmp_path / "mine.zip.part").exists()

    # A sphere's history (its owner) and a user's data (a server administrator), with the
    # server's own name for the file.
    for token, which, name in (
        (alice.token, ["--sphere", team], f"cloison-sphere-{team}-"),
        (server.admin_token, ["--user", alice.user_id], f"cloison-export-{alice.user_id}-"),
    ):
        done = await asyncio.to_thread(
            subprocess.run,
            [*CLI, "--url", server.http_url, "--token", token, *which],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr
        written = await asyncio.to_thread(files_named, tmp_path, name)
        assert len(written) == 1 and written[0].suffix == ".zip"
        archive = read_archive(written[0].read_bytes())
        lines = archive.get("events.jsonl") or archive["messages.jsonl"]
        assert [m.get("body") for m in lines if m["kind"] == "post"] == [
            "line 0",
            "line 1",
            "line 2",
        ]
        written[0].unlink()

    # A refusal is a line and an exit status, and leaves no file behind.
    bad = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "server", "export", "--url", server.http_url, "--token", "x"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        cwd=tmp_path,
    )
    assert bad.returncode == 1
    assert "export refused: unauthorized" in bad.stderr
    left = await asyncio.to_thread(lambda: sorted(p.name for p in tmp_path.iterdir()))
    assert left == ["data", "mine.zip"]
