"""No body, token secret, display name or other text a person wrote reaches the logs.

A server at ``--log-level debug``, in each log format, lives through a working day with
canaries in every text (``privacy_scenario.workday``), then through what makes servers log:
frames that do not parse, frames of unknown type, bodies over the limit, writes refused
(no such sphere, another's post, a forged server-owned field, a mute), invalid UTF-8, forged
tokens in the auth frame, the ``Authorization`` header and the query string, HTTP bodies
that are not JSON or shorter than their ``Content-Length``, over-long names and comments,
and (as root, where the file system has an immutable flag) a database that refuses writes.
Every line the process wrote is then searched for every canary. The log rate limit lets the
first 20 lines of each template through: each provocation is made fewer times than that, so
none is hidden by it.

Display names count: they are personal data, and the test plants them (at enrolment and in
a rename) like bodies. Identifiers (user, sphere and connection ids) and client addresses
are not canaries: the logs name them (``docs/privacy.md``, "Logs").

Positive control: the data directory's name carries a marker, which the startup line must
show (on PostgreSQL, the listening address): the capture sees what the server writes, and
the same search finds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import subprocess
from pathlib import Path

import orjson
import pytest
from websockets.exceptions import ConnectionClosed

from protocol import (
    Ack,
    Auth,
    Edit,
    ErrorReply,
    Mute,
    Ping,
    Pong,
    Publish,
)
from tests.e2e.conftest import FAST
from tests.e2e.privacy_scenario import Canaries, workday
from tests.e2e.test_log_hygiene import DEBUG_OPTIONS, lying_request, unfinished_request
from tests.services import POSTGRES_URL, REDIS_URL, postgres_schema, require_shared_redis
from tests.support import TIMEOUT_S, Client, ServerProcess, User, pair


def immutable(flag: str, *paths: Path) -> bool:
    """``chattr`` the files; False where that cannot be done here."""
    if os.geteuid() != 0 or shutil.which("chattr") is None:
        return False
    done = subprocess.run(["chattr", flag, *map(str, paths)], capture_output=True, check=False)
    return done.returncode == 0


async def refused(client: Client, frame: Publish | Edit) -> ErrorReply:
    reply = await client.request(frame)
    assert isinstance(reply, ErrorReply), reply
    return reply


async def provocations(server: ServerProcess, canaries: Canaries) -> bool:
    """Everything that makes a server log, each carrying canaries; True if the SQLite
    database was made to refuse writes (as root, on a file system with an immutable flag)."""
    alice, bob, sphere_id = await pair(server)
    canaries.secret(alice.token)
    canaries.secret(bob.token)
    a, b = await alice.connect(), await bob.connect("msgpack")
    mine = await a.request(
        Publish(sphere_id=sphere_id, message_id="m", body=canaries.new("body"), ref="m")
    )
    assert isinstance(mine, Ack)

    body = canaries.new("body")
    for raw in (
        '{"type":"publish","sphere_id":"' + sphere_id + '","body":"' + body,  # cut short
        '{"type":"warp","body":"' + body + '"}',
        "not json " + body,
        orjson.dumps(
            {"type": "publish", "sphere_id": sphere_id, "message_id": "f", "body": body}
            | {"author_id": canaries.new("name"), "ref": "f"}
        ).decode(),
    ):
        await a.send_raw(raw)
        assert isinstance(await a.recv(), ErrorReply)
    await b.send_raw(b"\xc1" + canaries.new("body").encode())  # 0xc1: never valid msgpack
    assert isinstance(await b.recv(), ErrorReply)
    await refused(a, Publish(sphere_id=sphere_id, message_id="big", body=body * 2000, ref="b"))
    await refused(
        a, Publish(sphere_id="s_" + "x" * 16, message_id="n", body=canaries.new("body"), ref="n")
    )
    await refused(
        b, Edit(sphere_id=sphere_id, message_id="e", target=mine.offset, body=body, ref="e")
    )
    assert not isinstance(
        await a.request(Mute(sphere_id=sphere_id, user_id=bob.user_id, duration_s=60, ref="u")),
        ErrorReply,
    )
    await refused(b, Publish(sphere_id=sphere_id, message_id="mu", body=body, ref="mu"))
    assert isinstance(await a.request(Ping(ref="p")), Pong)

    # Invalid UTF-8 in a text frame closes the socket (and is logged once, at INFO).
    broken = await alice.connect()
    await broken.ws.send(b"\xff" + canaries.new("body").encode(), text=True)
    with pytest.raises(ConnectionClosed):
        await broken.recv(timeout_s=TIMEOUT_S)

    # Forged tokens, in every place a token travels.
    forged = f"clo_{secrets.token_hex(8)}_{canaries.new('secret')}"
    for url in (server.ws_url, server.ws_url + "?token=" + forged):
        bad = await Client.connect(url, None)
        await bad.send(Auth(token=forged, protocol=1))
        assert isinstance(await bad.recv(), ErrorReply)
    stranger = User(server, "u_nobody", "nobody", forged)
    assert (await stranger.api("GET", "/me")).status_code == 401
    assert (await stranger.api("GET", f"/me?token={forged}")).status_code == 401

    # HTTP bodies that are not JSON, cut short, or say too much.
    path = f"/spheres/{sphere_id}/messages"
    reply = await alice.api("POST", path, content=b'{"body": "' + body.encode())
    assert reply.status_code == 400, reply.text
    reply = await alice.api("POST", path, json={"message_id": "h", "body": body * 2000})
    assert reply.status_code in (400, 413), reply.text
    reply = await alice.api("PATCH", "/me", json={"name": canaries.new("name") * 20})
    assert reply.status_code == 400, reply.text
    request = b'{"name": "' + canaries.new("spherename").encode()
    assert b"Traceback" not in await lying_request(server, alice.token, 5000, request)

    # A database that refuses every write: the refused writes carry canaries.
    database = server.data_dir / "cloison.sqlite3"
    files = [database, database.with_name(database.name + "-wal")]
    faulted = database.exists() and await asyncio.to_thread(immutable, "+i", *files)
    if faulted:
        try:
            for n in range(3):
                frame = Publish(sphere_id=sphere_id, message_id=f"ro{n}", body=body, ref=f"r{n}")
                assert (await refused(a, frame)).code == "unavailable"
            edit = Edit(
                sphere_id=sphere_id, message_id="re", target=mine.offset, body=body, ref="x"
            )
            assert (await refused(a, edit)).code == "unavailable"
        finally:
            await asyncio.to_thread(immutable, "-i", *files)
    for client in (a, b):
        await client.close()
    return faulted


@pytest.mark.parametrize(
    ("store", "log_format"),
    [
        ("sqlite", "text"),
        ("sqlite", "json"),
        pytest.param("postgres", "json", marks=[pytest.mark.postgres, pytest.mark.redis]),
    ],
)
async def test_no_canary_reaches_the_logs(tmp_path: Path, store: str, log_format: str) -> None:
    marker = f"control{secrets.token_hex(8)}"
    options = [*FAST, *DEBUG_OPTIONS, "--log-format", log_format]
    async with contextlib.AsyncExitStack() as stack:
        store_url = ""
        if store == "postgres":
            require_shared_redis()
            schema = await stack.enter_async_context(postgres_schema())
            store_url = f"{POSTGRES_URL}?schema={schema}"
            options += ["--redis-url", REDIS_URL, "--redis-prefix", f"cloison-logs-{schema}:"]
        server = ServerProcess(tmp_path / marker, options, store_url=store_url)
        server.data_dir.mkdir()
        server.create_admin()
        server.start()
        canaries = Canaries()
        try:
            await workday([server], canaries)
            faulted = await provocations(server, canaries)
            async with server.http() as http:
                assert (await http.get("/healthz")).status_code == 200
            await unfinished_request(server)
        finally:
            server.stop()
    log = "".join(server.log)
    # The control, found by the same search: the SQLite path, or the address, on startup.
    shown = marker if store == "sqlite" else f"listening on 127.0.0.1:{server.port}"
    assert Canaries({"control": shown}).found_in(log) == ["control"]
    assert canaries.found_in(log) == []
    lines = [line for line in server.log if line.strip()]
    if log_format == "json":
        levels = {orjson.loads(line)["level"] for line in lines}  # every line is one object
        assert "debug" in levels, "the server did not run at debug level"
    else:
        assert any(line.startswith("DEBUG:") for line in lines)
    assert ("group commits are failing" in log) is faulted
    # What the logs do name: client addresses of WebSocket handshakes.
    assert "127.0.0.1:" in log and '"WebSocket /ws' in log
