"""Security classes that a sweep over the whole frame table can prove.

For an outsider, every client frame that names a sphere is generated from the protocol's frame
table, so a frame added later is swept too. Aimed at a private sphere it must get exactly the
answer it gets for a sphere that does not exist: no side path skips the membership check
(class A), sphere ids are not an IDOR, and no answer is an existence oracle. A field the
server owns (author, offset, timestamp) sent by a client is refused, never trusted (class H).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from protocol import ClientFrame, ErrorReply, Frame, Role
from server.operations import BY_FRAME
from tests.e2e.conftest import start_server
from tests.support import Client, ServerProcess, pair

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = start_server(tmp_path)
    yield proc
    proc.stop()


FILL: dict[str, object] = {  # a valid value for each required field, by name
    "message_id": "m1",
    "body": "hello",
    "target": 1,
    "offset": 0,
    "name": "renamed",
    "duration_s": 3600,
    "emoji": "+1",
    "text": "be kind",
    "version": 1,
    "root": 1,
    "org_id": "default",
}


def sphere_frames(sphere_id: str, user_id: str) -> list[Frame]:
    """One instance of every client frame type that has a ``sphere_id``, with a ``ref``."""
    frames: list[Frame] = []
    for kind in typing.get_args(ClientFrame):
        names = {f.name for f in dataclasses.fields(kind)}
        if "sphere_id" not in names:
            continue
        values: dict[str, object] = {"sphere_id": sphere_id, "ref": "r"}
        for f in dataclasses.fields(kind):
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if f.name in values or not required:
                continue
            values[f.name] = user_id if f.name == "user_id" else FILL[f.name]
        frames.append(kind(**values))
    return frames


def answer(reply: Frame) -> tuple[str, str | None]:
    return (type(reply).__name__, reply.code if isinstance(reply, ErrorReply) else None)


async def test_no_frame_tells_a_private_sphere_from_none(server: ServerProcess) -> None:
    owner, _member, sphere_id = await pair(server)
    outsider = await server.new_user("outsider")
    client = await Client.connect(server.ws_url, outsider.token)
    frames = sphere_frames(sphere_id, owner.user_id)
    assert len(frames) >= 10, [type(f).__name__ for f in frames]  # the sweep found the table
    for real, fake in zip(frames, sphere_frames("s_doesnotexist000", owner.user_id), strict=True):
        got_real = await client.request(real)
        got_fake = await client.request(fake)
        assert answer(got_real) == answer(got_fake), (type(real).__name__, got_real, got_fake)
        if isinstance(got_real, ErrorReply):
            assert got_real.message.replace(sphere_id, "X") == got_fake.message.replace(
                "s_doesnotexist000", "X"
            ), (got_real, got_fake)
            # forbidden would say the sphere exists; a row checked on the organisation first
            # (manage_sphere) refuses the same for both, before looking at any sphere.
            if BY_FRAME[type(real)].org_right is None:
                assert got_real.code != "forbidden", got_real
    # And nothing was changed by the attempts: the owner still owns a one-member-added sphere.
    members = await owner.api("GET", f"/spheres/{sphere_id}/members")
    assert members.status_code == 200
    roles = sorted(m["role"] for m in members.json()["members"])
    assert roles == sorted([Role.OWNER.value, Role.MEMBER.value])


@pytest.mark.parametrize("field", ["author_id", "offset", "ts_ms", "edited_ms", "deleted"])
async def test_server_owned_fields_from_a_client_are_refused(
    server: ServerProcess, field: str
) -> None:
    owner, _member, sphere_id = await pair(server)
    client = await Client.connect(server.ws_url, owner.token)
    forged = {
        "type": "publish",
        "sphere_id": sphere_id,
        "message_id": "m1",
        "body": "x",
        "ref": "f",
        field: 1,
    }
    await client.send_raw(orjson.dumps(forged).decode())
    reply = await client.recv()
    assert isinstance(reply, ErrorReply) and reply.code == "bad_frame", reply
