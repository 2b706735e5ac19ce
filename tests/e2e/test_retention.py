"""Retention and legal hold against a real server: expired messages leave history for good,
clients that page or resume from before the horizon are told (``truncated_before``), a legal
hold stops retention and deletion until it is lifted, and every act is audited."""

from __future__ import annotations

import datetime
import secrets
import time
from pathlib import Path

import httpx

from protocol import (
    Delete,
    ErrorReply,
    Message,
    Privacy,
    Replayed,
    StreamPosition,
    Subscribe,
    Subscribed,
)
from tests.e2e.conftest import start_server
from tests.raw_files import assert_absent_sqlite, assert_present_sqlite
from tests.support import ServerProcess, User, eventually, pair

DAY_S = 86_400


def _as_of(days: float) -> str:
    """An ISO time ``days`` from now, for ``cloison retention run --as-of``."""
    return datetime.datetime.fromtimestamp(time.time() + days * DAY_S, datetime.UTC).isoformat()


async def _post(user: User, sphere_id: str, body: str) -> int:
    reply = await user.api(
        "POST",
        f"/spheres/{sphere_id}/messages",
        json={"message_id": secrets.token_hex(8), "body": body},
    )
    assert reply.status_code == 201, reply.text
    return int(reply.json()["offset"])


async def _history(user: User, sphere_id: str, **query: int) -> httpx.Response:
    return await user.api("GET", f"/spheres/{sphere_id}/messages", params=query)


async def test_expired_messages_leave_and_clients_are_told(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--retention-interval-s", "0.3")
    try:
        await _expiry_and_truncation(server)
    finally:
        server.stop()


async def _expiry_and_truncation(server: ServerProcess) -> None:
    alice, bob, sphere_id = await pair(server)
    reply = await alice.api("PATCH", f"/spheres/{sphere_id}", json={"retention_days": 1})
    assert reply.status_code == 200, reply.text
    assert reply.json()["sphere"]["retention_days"] == 1
    canary = secrets.token_hex(16)
    first = await _post(alice, sphere_id, f"old {canary}")
    await _post(alice, sphere_id, "old two")
    assert_present_sqlite(server.data_dir, canary.encode())
    out = server.cli("retention", "run", "--as-of", _as_of(2))
    assert out.strip() == "1 spheres with a period, 5 events removed", out
    assert_absent_sqlite(server.data_dir, canary.encode())
    fresh = await _post(alice, sphere_id, "fresh")
    horizon = fresh  # everything before the run is gone; the run itself wrote no event
    # History: the newest page reaches the bottom and says where history now begins.
    page = (await _history(bob, sphere_id)).json()
    assert [m["offset"] for m in page["messages"]] == [fresh]
    assert page["has_more"] is False and page["truncated_before"] == horizon
    page = (await _history(bob, sphere_id, after=first - 1)).json()
    assert page["truncated_before"] == horizon
    page = (await _history(bob, sphere_id, after=horizon)).json()
    assert "truncated_before" not in page  # nothing was cut above the horizon
    # Resume from a position below the horizon: told, then replayed from the horizon.
    client = await bob.connect()
    info = (await bob.api("GET", "/spheres")).json()["spheres"][0]
    assert info["retained_from"] == horizon
    since = StreamPosition(first, info["epoch"])
    reply = await client.request(Subscribe(sphere_id=sphere_id, since=since, ref=client.ref()))
    assert isinstance(reply, Subscribed) and reply.truncated_before == horizon, reply
    replayed = await client.expect(Message)
    assert replayed.offset == horizon and replayed.body == "fresh"
    await client.expect(Replayed)
    # The server's own job runs too (nothing of this sphere is a day old by its clock).
    async with server.http() as http:

        async def ran() -> bool:
            scraped = (await http.get("/metrics")).text
            line = next(
                x for x in scraped.splitlines() if x.startswith("cloison_retention_last_run")
            )
            return float(line.split()[1]) > 0

        await eventually(ran)
    status = server.cli("retention", "status", "--sphere", sphere_id)
    assert f"{sphere_id}\t1 days (own)\toldest " in status
    assert f"from offset {horizon}\tlast pass " in status and "no hold" in status


async def test_a_legal_hold_blocks_retention_and_deletion_until_lifted(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        await _legal_hold(server)
    finally:
        server.stop()


async def _legal_hold(server: ServerProcess) -> None:
    alice, bob, sphere_id = await pair(server)
    await alice.api("PATCH", f"/spheres/{sphere_id}", json={"retention_days": 1})
    kept = await _post(bob, sphere_id, "evidence")
    watcher = await alice.connect()
    await watcher.request(Subscribe(sphere_id=sphere_id, ref=watcher.ref()))
    hold = f"/admin/spheres/{sphere_id}/legal-hold"
    refused = await alice.api("PUT", hold, json={"reason": "case 7"})
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    async with server.http(server.admin_token) as admin:
        bad = await admin.put("/api/v1" + hold, json={"reason": " "})
        assert bad.status_code == 400 and bad.json()["code"] == "bad_frame"
        reply = await admin.put("/api/v1" + hold, json={"reason": "case 7"})
        assert reply.status_code == 200, reply.text
        assert reply.json()["legal_hold"]["reason"] == "case 7"
        # Members see it live, and in the sphere's summary (without the reason).
        event = await watcher.expect(Message, privacy=Privacy.PRIVATE)  # a sphere event
        assert event.legal_hold is not None and event.legal_hold.until_ms is None
        summary = (await bob.api("GET", "/spheres")).json()["spheres"][0]
        assert summary["legal_hold"] == {"since_ms": event.legal_hold.since_ms}
        # Deletion fails for the author and for a moderator, over HTTP and WebSocket.
        for user in (bob, alice):
            deleted = await user.api(
                "DELETE", f"/spheres/{sphere_id}/messages/{kept}", json={"message_id": "d1"}
            )
            assert deleted.status_code == 409 and deleted.json()["code"] == "legal_hold"
        reply_ws = await watcher.request(
            Delete(sphere_id=sphere_id, message_id="d2", target=kept, ref=watcher.ref())
        )
        assert isinstance(reply_ws, ErrorReply) and reply_ws.code == "legal_hold"
        edited = await bob.api(
            "PUT", f"/spheres/{sphere_id}/messages/{kept}", json={"message_id": "e1", "body": "x"}
        )
        assert edited.status_code == 200, edited.text  # a hold stops deletion, not edits
        await watcher.expect(Message, target=kept)
        gone = await alice.api("DELETE", f"/spheres/{sphere_id}")
        assert gone.status_code == 409 and gone.json()["code"] == "legal_hold"
        # Retention skips the sphere.
        out = server.cli("retention", "run", "--as-of", _as_of(3))
        assert out.strip() == "1 spheres with a period, 0 events removed", out
        assert "hold since" in server.cli("retention", "status", "--sphere", sphere_id)
        lifted = await admin.delete("/api/v1" + hold)
        assert lifted.status_code == 200 and lifted.json()["legal_hold"] is None
        event = await watcher.expect(Message, privacy=Privacy.PRIVATE)  # a sphere event
        assert event.legal_hold is None
        # Lifted: the next pass removes what expired meanwhile, the hold's two events too.
        out = server.cli("retention", "run", "--as-of", _as_of(3))
        assert out.strip() == "1 spheres with a period, 7 events removed", out
        page = (await _history(bob, sphere_id)).json()
        assert page["messages"] == [] and page["truncated_before"] == kept + 4
        audit = (await admin.get("/api/v1/admin/audit")).json()["entries"]
        actions = [e["action"] for e in audit]
        assert actions[:2] == ["legal_hold_released", "legal_hold_set"]
        assert audit[1]["detail"] == f"sphere={sphere_id},until=released,reason=case 7"
        state = (await admin.get(f"/api/v1/admin/spheres/{sphere_id}/retention")).json()
        assert state["effective_days"] == 1 and state["legal_hold"] is None
    sphere_audit = (await alice.api("GET", f"/spheres/{sphere_id}/audit")).json()["entries"]
    actions = [e["action"] for e in sphere_audit]
    assert actions[:3] == ["retention_applied", "legal_hold_released", "legal_hold_set"]
    assert "retention_changed" in actions
    # The CLI holds and releases as well, with an end time; a past one is refused.
    until = _as_of(10)[:19]
    out = server.cli("retention", "hold", sphere_id, "--reason", "inquiry", "--until", until)
    assert out.startswith(f"legal hold on {sphere_id} until ")
    # The command reaches no server: the node delivers its event at its next reconciliation.
    event = await watcher.expect(Message, privacy=Privacy.PRIVATE)
    assert event.legal_hold is not None and event.legal_hold.until_ms is not None
    assert server.cli("retention", "release", sphere_id).strip() == f"released {sphere_id}"
    event = await watcher.expect(Message, privacy=Privacy.PRIVATE)
    assert event.legal_hold is None
