"""What operators see: health, readiness and metrics."""

from __future__ import annotations

import re

import httpx

from protocol import Ack, Message, Publish, Subscribe
from tests.support import ServerProcess


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
