"""What operators see: health, readiness and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from protocol import Ack, Message, Ping, Pong, Publish, Subscribe
from tests.e2e.conftest import start_server
from tests.support import Client, ServerProcess


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
    assert found, f"{name} missing"
    return float(found.group(1))


async def test_health_readiness_and_metrics(server: ServerProcess) -> None:
    owner = await server.new_user("owner")
    reader = await server.new_user("reader")
    sphere_id = await owner.create_sphere()
    await owner.add(sphere_id, reader)
    r = await reader.connect()
    await r.request(Subscribe(sphere_id=sphere_id, ref="s"))
    w = await owner.connect()
    for n in range(5):
        assert isinstance(
            await w.request(Publish(sphere_id=sphere_id, message_id=f"m{n}", body="x", ref=str(n))),
            Ack,
        )
    await w.request(Publish(sphere_id=sphere_id, message_id="m0", body="x", ref="again"))
    for _ in range(5):
        await r.expect(Message)
    async with httpx.AsyncClient(base_url=server.http_url, timeout=5) as http:
        health = (await http.get("/healthz")).json()
        assert health == {"status": "ok", "connections": 2}
        readiness = await http.get("/readyz")
        assert readiness.status_code == 200
        assert readiness.json() == {"ready": True, "store": True, "broker": True}
        text = (await http.get("/metrics")).text
    assert metric(text, 'cloison_writes_total{result="new"}') == 5
    assert metric(text, 'cloison_writes_total{result="duplicate"}') == 1
    assert (
        metric(text, "cloison_deliveries_total") == 5
    )  # the re-sent duplicate is not delivered again
    assert metric(text, "cloison_connections") == 2
    assert metric(text, "cloison_fanout_latency_seconds_count") >= 5


async def test_json_logs_carry_no_secrets(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--log-format", "json")
    try:
        user = await server.new_user()
        # A client that puts its token in the URL anyway: the log must not show it.
        ws = await websockets.connect(f"{server.ws_url}?token={user.token}")
        await ws.close()
        client = await user.connect()
        await client.close()
    finally:
        server.stop()
    lines = [json.loads(line) for line in server.log if line.startswith("{")]
    assert lines
    assert all({"ts", "level", "logger", "message"} <= set(entry) for entry in lines)
    assert not any(user.token in line for line in server.log)
    assert any("[accepted]" in entry["message"] for entry in lines)


async def test_tls(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    await asyncio.to_thread(
        subprocess.run,
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    server = start_server(tmp_path, "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        context = ssl.create_default_context(cafile=str(cert))
        async with httpx.AsyncClient(verify=context, timeout=5) as http:
            reply = await http.get(f"https://127.0.0.1:{server.port}/healthz")
            assert reply.status_code == 200
        server.verify = context
        user = await server.new_user()
        client = await Client.connect(f"wss://127.0.0.1:{server.port}/ws", user.token, ssl=context)
        assert isinstance(await client.request(Ping(ref="p")), Pong)
        with pytest.raises(ssl.SSLCertVerificationError):
            await websockets.connect(f"wss://127.0.0.1:{server.port}/ws")
    finally:
        server.stop()


async def test_shutdown_drains_connections_in_batches(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--drain-batch", "2", "--drain-interval-s", "0.5")
    users = [await server.new_user() for _ in range(6)]
    clients = [await u.connect() for u in users]
    closed_at: list[float] = []

    async def wait_close(client: Client) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await client.ws.recv()
        assert client.ws.close_code == 1012
        closed_at.append(time.monotonic())

    waiting = [asyncio.create_task(wait_close(c)) for c in clients]
    stopped = asyncio.create_task(server.wait_stopped())
    await asyncio.wait_for(asyncio.gather(*waiting), 20)
    assert await stopped == 0
    closed_at.sort()
    assert closed_at[-1] - closed_at[0] >= 0.9  # three batches, half a second apart
    assert closed_at[1] - closed_at[0] < 0.3  # two of them at once


async def test_web_client_is_served_with_a_strict_policy(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=5) as http:
        page = await http.get("/")
        module = await http.get("/cloison.js")
    assert page.status_code == 200
    assert "<html" in page.text
    assert module.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
