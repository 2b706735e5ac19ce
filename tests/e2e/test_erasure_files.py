"""Erasure reaches the SQLite files: once a delete is acknowledged, no byte of the erased text
is left in the database file, its write-ahead log or its shared-memory file, nor in the logs.

Each test first finds the canary in the files (the positive control), so that its absence
afterwards means the bytes went, not that they were never there.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import sqlite3

import httpx

from protocol import Ack, Delete, DeleteSphere, Edit, Ok, Publish
from tests.raw_files import (
    SQLITE_DATABASE,
    assert_absent_sqlite,
    assert_absent_text,
    assert_present_sqlite,
)
from tests.support import Client, ServerProcess, eventually, pair


def canary() -> bytes:
    return f"CANARY-{secrets.token_hex(12)}".encode()


async def post(client: Client, sphere_id: str, body: bytes) -> int:
    reply = await client.request(
        Publish(sphere_id=sphere_id, message_id=secrets.token_hex(8), body=body.decode(), ref="p")
    )
    assert isinstance(reply, Ack), reply
    return reply.offset


async def delete(client: Client, sphere_id: str, target: int) -> None:
    reply = await client.request(
        Delete(sphere_id=sphere_id, message_id=secrets.token_hex(8), target=target, ref="d")
    )
    assert isinstance(reply, Ack), reply


async def metric(server: ServerProcess, name: str) -> float:
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        text = (await http.get("/metrics")).text
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found, f"no {name} in /metrics"
    return float(found.group(1))


async def test_a_deleted_message_is_gone_from_every_file_when_acknowledged(
    server: ServerProcess,
) -> None:
    alice, _, sphere_id = await pair(server)
    a = await alice.connect()
    secret, kept = canary(), canary()
    target = await post(a, sphere_id, secret)
    await post(a, sphere_id, kept)
    assert_present_sqlite(server.data_dir, secret)

    await delete(a, sphere_id, target)
    assert_absent_sqlite(server.data_dir, secret)
    assert_present_sqlite(server.data_dir, kept)  # erasure is exact: the next post stays
    assert await metric(server, "cloison_erasure_scrub_pending") == 0
    assert await metric(server, "cloison_erasure_scrubs") >= 1
    assert_absent_text(server.log, secret)
    # The operator's command, beside the running server: the log is empty already.
    out = await asyncio.to_thread(server.cli, "privacy", "compact")
    assert re.search(r"^write-ahead log +0 -> +0 bytes", out, re.MULTILINE), out


async def test_every_version_of_an_edited_message_goes_with_its_delete(
    server: ServerProcess,
) -> None:
    alice, _, sphere_id = await pair(server)
    a = await alice.connect()
    first, second, third = canary(), canary(), canary()
    target = await post(a, sphere_id, first)
    assert_present_sqlite(server.data_dir, first)
    for body in (second, third):
        reply = await a.request(
            Edit(
                sphere_id=sphere_id,
                message_id=secrets.token_hex(8),
                target=target,
                body=body.decode(),
                ref="e",
            )
        )
        assert isinstance(reply, Ack), reply
    # The post's row holds its current text, each edit's row the text it set: the text the
    # first edit replaced is nowhere, and left the files with that edit's acknowledgement.
    assert_absent_sqlite(server.data_dir, first)
    assert_present_sqlite(server.data_dir, second)
    assert_present_sqlite(server.data_dir, third)

    await delete(a, sphere_id, target)
    for version in (first, second, third):
        assert_absent_sqlite(server.data_dir, version)
        assert_absent_text(server.log, version)


async def test_a_deleted_sphere_leaves_no_text_of_it(server: ServerProcess) -> None:
    alice, _, sphere_id = await pair(server)
    name = canary()
    renamed = await alice.api("PATCH", f"/spheres/{sphere_id}", json={"name": name.decode()})
    assert renamed.status_code == 200, renamed.text
    a = await alice.connect()
    bodies = [canary() for _ in range(3)]
    for body in bodies:
        await post(a, sphere_id, body)
    for text in (name, *bodies):
        assert_present_sqlite(server.data_dir, text)

    reply = await a.request(DeleteSphere(sphere_id=sphere_id, ref="x"))
    assert isinstance(reply, Ok), reply
    for text in (name, *bodies):
        assert_absent_sqlite(server.data_dir, text)
        assert_absent_text(server.log, text)


async def test_a_reader_holding_the_log_delays_the_scrub_not_the_ack(
    server: ServerProcess,
) -> None:
    alice, _, sphere_id = await pair(server)
    a = await alice.connect()
    secret = canary()
    target = await post(a, sphere_id, secret)
    # Another process reads in a transaction: its snapshot pins the write-ahead log.
    reader = sqlite3.connect(server.data_dir / SQLITE_DATABASE, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM events").fetchone()
        await delete(a, sphere_id, target)  # acknowledged all the same
        assert await metric(server, "cloison_erasure_scrub_pending") == 1
        assert_present_sqlite(server.data_dir, secret)  # the log keeps it for the reader
    finally:
        reader.close()

    async def scrubbed() -> bool:
        return await metric(server, "cloison_erasure_scrub_pending") == 0

    await eventually(scrubbed, timeout_s=5)  # retried every second
    assert_absent_sqlite(server.data_dir, secret)
