"""Half-sent requests are dropped at the handshake deadline and capped per address, so they
cannot exhaust the descriptors that healthy clients need.

Unbounded, half-sent requests were kept at least 105 s, and with the descriptor limit at
1,024, 1,100 of them made every WebSocket connect and /healthz fail for the whole run.
"""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
from websockets.exceptions import WebSocketException

from tests.hostile._attack import (
    ATTACKER,
    Probe,
    attacker_socket,
    closed_by_peer,
    duration,
    figure,
    pid_of,
    running,
    set_descriptor_limit,
    wait_closed,
)
from tests.support import Client, ServerProcess

DESCRIPTORS = 1024
HALF_SENT = 1100
HANDSHAKE_TIMEOUT_S = 5.0
UNAUTHENTICATED_PER_ADDRESS = 64


def half_sent_requests(port: int, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = attacker_socket(ATTACKER)
        sock.settimeout(5)
        try:
            sock.connect(("127.0.0.1", port))
            sock.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
        except OSError:
            sock.close()
            continue
        socks.append(sock)
    return socks


async def healthy_connects(server: ServerProcess, user_token: str, seconds: float) -> list[str]:
    """Open (and authenticate) a WebSocket and GET /healthz twice a second; the failures."""
    failures: list[str] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    async with server.http() as http:
        while loop.time() < end:
            try:
                client = await Client.connect(server.ws_url, user_token)
                await client.close()
                Client.opened.remove(client)
                reply = await http.get("/healthz")
                if reply.status_code != 200:
                    failures.append(f"healthz {reply.status_code}")
            except (
                OSError,
                TimeoutError,
                AssertionError,
                WebSocketException,
                httpx.HTTPError,
            ) as exc:
                failures.append(repr(exc))
            await asyncio.sleep(0.5)
    return failures


async def test_slowloris_cannot_exhaust_descriptors(tmp_path) -> None:
    rounds = int(duration(1, 4))
    with running(
        tmp_path,
        "--handshake-timeout-s",
        str(HANDSHAKE_TIMEOUT_S),
        "--max-unauthenticated-per-address",
        str(UNAUTHENTICATED_PER_ADDRESS),
    ) as server:
        set_descriptor_limit(pid_of(server), DESCRIPTORS)
        user = await server.new_user("healthy")
        probe = await Probe.open(user)
        for _ in range(rounds):
            started = time.monotonic()
            socks = await asyncio.to_thread(half_sent_requests, server.port, HALF_SENT)
            opened_s = time.monotonic() - started
            try:
                probing = asyncio.create_task(probe.run(HANDSHAKE_TIMEOUT_S + 2))
                connecting = asyncio.create_task(
                    healthy_connects(server, user.token, HANDSHAKE_TIMEOUT_S)
                )
                # Those over the per-address cap are refused at once; the rest are dropped
                # at the deadline, counted from their connect.
                await asyncio.sleep(1.0)
                refused_early = sum(closed_by_peer(s) for s in socks)
                held = len(socks) - refused_early
                all_closed_s = opened_s + await wait_closed(socks, HANDSHAKE_TIMEOUT_S + 5)
                failures = await connecting
                await probing
            finally:
                for sock in socks:
                    sock.close()
            figure(
                f"slowloris {len(socks)} half-sent requests, fd limit {DESCRIPTORS}:"
                f" {refused_early} refused at once, {held} held; all closed"
                f" {all_closed_s:.1f} s after the first connect;"
                f" healthy connect failures {failures}; {probe.summary()}"
            )
            assert not failures
            assert held <= UNAUTHENTICATED_PER_ADDRESS
            assert all_closed_s < HANDSHAKE_TIMEOUT_S + opened_s + 2
        probe.assert_healthy()
