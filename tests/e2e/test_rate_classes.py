"""Every request class has its own per-user budget; a burst past it gets ``rate_limited``."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from protocol import (
    CLIENT_FRAMES,
    CreateSphere,
    ErrorReply,
    Frame,
    History,
    Join,
    MarkRead,
    Ping,
    Pong,
    Publish,
    SphereId,
    Typing,
    UpdateSphere,
)
from server.operations import RATE_CLASSES
from server.ratelimit import RateClass
from tests.e2e.conftest import start_server
from tests.support import ServerProcess

BURST = 3
# Why: a token every 1000 s, so no refill happens while a test runs on a loaded machine.
SLOW = "0.001"
CLASS_FLAGS = [
    flag
    for name in ("publish", "membership", "sphere_admin", "read_marker", "typing", "query")
    for flag in (
        f"--{name.replace('_', '-')}-rate-per-s",
        SLOW,
        f"--{name.replace('_', '-')}-burst",
        str(BURST),
    )
]


def test_every_client_frame_has_a_rate_class() -> None:
    assert set(RATE_CLASSES) == set(CLIENT_FRAMES)


@pytest.fixture
def strict_server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = start_server(tmp_path, *CLASS_FLAGS)
    yield proc
    proc.stop()


Make = Callable[[SphereId, int], Frame]
CASES: list[tuple[RateClass, Make]] = [
    (RateClass.MEMBERSHIP, lambda s, n: Join(sphere_id=s, ref=f"j{n}")),
    (RateClass.SPHERE_ADMIN, lambda s, n: CreateSphere(name=f"mine {n}", ref=f"c{n}")),
    (
        RateClass.POST,
        lambda s, n: Publish(sphere_id=s, message_id=uuid.uuid4().hex, body="hi", ref=f"p{n}"),
    ),
    (RateClass.READ_MARKER, lambda s, n: MarkRead(sphere_id=s, offset=0, ref=f"r{n}")),
    (RateClass.TYPING, lambda s, n: Typing(sphere_id=s, ref=f"t{n}")),
    (RateClass.QUERY, lambda s, n: History(sphere_id=s, ref=f"h{n}")),
]


async def test_each_class_is_limited_on_one_connection(strict_server: ServerProcess) -> None:
    owner = await strict_server.new_user("owner")
    sphere_id = SphereId(await owner.create_sphere("open", privacy="open"))
    bob = await strict_server.new_user("bob")
    client = await bob.connect()
    assert {cls for cls, _ in CASES} == set(RateClass) - {RateClass.FREE}
    for cls, make in CASES:
        for n in range(BURST):
            reply = await client.request(make(sphere_id, n))
            assert not isinstance(reply, ErrorReply), (cls, reply)
        refused = await client.request(make(sphere_id, BURST))
        assert isinstance(refused, ErrorReply), (cls, refused)
        assert refused.code == "rate_limited" and refused.retryable, refused
        assert refused.retry_after_ms is not None and refused.retry_after_ms > 1000, refused
        assert str(cls) in refused.message
    # Free requests stay free, and one user's budgets are not another's.
    for n in range(3 * BURST):
        assert isinstance(await client.request(Ping(ref=f"ping{n}")), Pong)
    other = await (await strict_server.new_user("carol")).connect()
    assert not isinstance(await other.request(Join(sphere_id=sphere_id, ref="j")), ErrorReply)


async def test_http_requests_spend_the_same_budget(strict_server: ServerProcess) -> None:
    owner = await strict_server.new_user("owner")
    sphere_id = await owner.create_sphere("s")  # one sphere_admin token
    client = await owner.connect()
    reply = await client.request(UpdateSphere(sphere_id=SphereId(sphere_id), name="a", ref="u"))
    assert not isinstance(reply, ErrorReply), reply
    answer = await owner.api("PATCH", f"/spheres/{sphere_id}", json={"name": "b"})
    assert answer.status_code == 200, answer.text
    answer = await owner.api("PATCH", f"/spheres/{sphere_id}", json={"name": "c"})
    assert answer.status_code == 429, answer.text
    assert answer.json()["code"] == "rate_limited" and int(answer.headers["retry-after"]) >= 1
