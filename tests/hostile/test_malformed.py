"""Malformed input against a real server: it never crashes, always answers with a documented
error or close code, never leaks a stack trace, and a healthy client beside it never notices.

Three families of input (Hypothesis): valid client frames with one field perturbed (a value
replaced, a field dropped or added), random maps in either encoding, and random bytes or text.
Each example is sent on a fresh connection, before or after ``auth``, then followed by a
``ping`` whose ``pong`` shows the connection still serves (or a close shows why it does not).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import msgpack
import orjson
import pytest
import websockets
from hypothesis import HealthCheck, given, settings, strategies as st
from websockets.exceptions import ConnectionClosed

from protocol import (
    Ack,
    Auth,
    Batch,
    CloseCode,
    ErrorCode,
    ErrorReply,
    JsonCodec,
    Message,
    MsgpackCodec,
    Ping,
    Pong,
    Publish,
    Subscribe,
    Subscribed,
)
from tests.e2e.conftest import start_server
from tests.hostile.conftest import LONG, report_line
from tests.hostile.driver import Wire
from tests.support import ServerProcess, pair

pytestmark = [pytest.mark.slow]

EXAMPLES = 5000 if LONG else 300  # each example is two round trips on a fresh connection
REPLY_TIMEOUT_S = 10.0
DOCUMENTED_ERRORS = {code.value for code in ErrorCode}
# The WebSocket layer's own codes (bad framing, bad UTF-8, too big) are documented too.
DOCUMENTED_CLOSES = {code.value for code in CloseCode} | {1002, 1007, 1009}


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server(tmp_path_factory.mktemp("malformed"))
    yield server
    server.stop()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats()
    | st.text(max_size=80),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=12,
)


def valid_frames(sphere_id: str) -> list[dict[str, Any]]:
    return [
        {"type": "publish", "sphere_id": sphere_id, "message_id": "m1", "body": "hi", "ref": "1"},
        {
            "type": "subscribe",
            "sphere_id": sphere_id,
            "since": {"offset": 0, "epoch": "e"},
            "ref": "2",
        },
        {"type": "history", "sphere_id": sphere_id, "after": 0, "limit": 10, "ref": "3"},
        {
            "type": "edit",
            "sphere_id": sphere_id,
            "message_id": "m2",
            "target": 1,
            "body": "x",
            "ref": "4",
        },
        {"type": "mark_read", "sphere_id": sphere_id, "offset": 1, "ref": "5"},
        {"type": "create_sphere", "name": "s", "privacy": "private", "ref": "6"},
        {
            "type": "add_member",
            "sphere_id": sphere_id,
            "user_id": "u",
            "role": "member",
            "ref": "7",
        },
        {"type": "batch", "frames": [{"type": "ping", "ref": "8"}]},
        {"type": "auth", "token": "t", "protocol": 1, "ref": "9"},
    ]


@st.composite
def perturbed(draw: st.DrawFn, sphere_id: str) -> dict[str, Any]:
    frame = dict(draw(st.sampled_from(valid_frames(sphere_id))))
    key = draw(st.sampled_from(sorted(frame)))
    how = draw(st.sampled_from(["replace", "drop", "add"]))
    if how == "replace":
        frame[key] = draw(json_values)
    elif how == "drop":
        del frame[key]
    else:
        frame[draw(st.text(min_size=1, max_size=12))] = draw(json_values)
    return frame


def inputs(sphere_id: str) -> st.SearchStrategy[tuple[str, bool, str | bytes]]:
    """(encoding, authenticate first, payload) triples."""
    as_json = st.one_of(
        perturbed(sphere_id), st.dictionaries(st.text(max_size=12), json_values, max_size=6)
    ).map(lambda frame: orjson.dumps(frame).decode())
    as_msgpack = st.one_of(
        perturbed(sphere_id), st.dictionaries(st.text(max_size=12), json_values, max_size=6)
    ).map(_packb)
    raw = st.one_of(st.binary(max_size=200), st.text(max_size=200))
    return st.one_of(
        st.tuples(st.just("json"), st.booleans(), st.one_of(as_json, raw)),
        st.tuples(st.just("msgpack"), st.booleans(), st.one_of(as_msgpack, raw)),
    )


def _packb(frame: dict[str, Any]) -> bytes:
    return bytes(msgpack.packb(frame))  # the values stay within 64 bits: msgpack packs them


async def probe(
    url: str, token: str, encoding: str, authenticate: bool, payload: str | bytes
) -> str:
    """Send ``payload``, then a ping; return what happened: ``served`` or ``closed CODE``."""
    codec = JsonCodec() if encoding == "json" else MsgpackCodec()
    async with asyncio.timeout(REPLY_TIMEOUT_S):
        ws = await websockets.connect(
            url,
            subprotocols=[codec.subprotocol],
            max_size=2**22,  # type: ignore[list-item]
        )
    try:
        if authenticate:
            await ws.send(codec.encode(Auth(token=token, protocol=1)))
            await asyncio.wait_for(ws.recv(), REPLY_TIMEOUT_S)  # welcome
        await ws.send(payload)
        await ws.send(codec.encode(Ping(ref="probe")))
        async with asyncio.timeout(REPLY_TIMEOUT_S):
            while True:
                frame = codec.decode_server(await ws.recv())
                for one in frame.frames if isinstance(frame, Batch) else [frame]:
                    if isinstance(one, ErrorReply):
                        assert one.code in DOCUMENTED_ERRORS, one
                        assert "Traceback" not in one.message, one
                    if isinstance(one, Pong) and one.ref == "probe":
                        return "served"
    except ConnectionClosed as closed:
        # Every way the server ends a WebSocket sends a close frame first, an application
        # fault included (1011, server/wire/websocket.py); none of these inputs is a reason
        # to reset. No frame here is a server defect: say how the connection ended.
        assert closed.rcvd is not None, (
            f"closed without a close frame after {payload!r} (auth first: {authenticate}; "
            f"we sent {closed.sent}; cause {closed.__cause__!r})"
        )
        code = closed.rcvd.code
        assert code in DOCUMENTED_CLOSES, f"closed with {code} after {payload!r}"
        return f"closed {code}"
    finally:
        with contextlib.suppress(Exception):  # the server may have closed it already
            await ws.close()


def hammer(url: str, token: str, sphere_id: str, outcomes: dict[str, int]) -> None:
    """Run the Hypothesis search (in a worker thread: each example on its own event loop)."""

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(example=inputs(sphere_id))
    def one(example: tuple[str, bool, str | bytes]) -> None:
        encoding, authenticate, payload = example
        outcome = asyncio.run(probe(url, token, encoding, authenticate, payload))
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    one()


HEALTHY_PING_S = 0.5  # how often the healthy client checks it is still served
HEALTHY_MAX_RTT_S = 5.0  # a loaded box answers a ping in milliseconds; seconds mean harm


@pytest.mark.e2e
async def test_malformed_frames_never_hurt_the_server_or_a_healthy_client(
    target: ServerProcess,
) -> None:
    owner, member, sphere_id = await pair(target)
    received: list[Message] = []
    healthy = await Wire.open(target.ws_url, member.token, received.append)
    try:
        reply = await healthy.request(lambda ref: Subscribe(sphere_id=sphere_id, ref=ref))
        assert isinstance(reply, Subscribed), reply
        outcomes: dict[str, int] = {}
        search = asyncio.ensure_future(
            asyncio.to_thread(hammer, target.ws_url, owner.token, sphere_id, outcomes)
        )
        worst_rtt_s = 0.0
        while not search.done():
            started = time.monotonic()
            assert isinstance(await healthy.request(lambda ref: Ping(ref=ref)), Pong)
            worst_rtt_s = max(worst_rtt_s, time.monotonic() - started)
            await asyncio.wait([search], timeout=HEALTHY_PING_S)
        try:
            await search  # raises the falsifying example, if any
        except AssertionError as failed:
            log = "".join(target.log)[-4000:]
            raise AssertionError(f"{failed}\n--- server log (tail) ---\n{log}") from failed
        assert not healthy.closed.is_set(), "the healthy client was disconnected"
        assert worst_rtt_s < HEALTHY_MAX_RTT_S
        # The healthy client still gets the sphere's posts (perturbed publishes may add some).
        writer = await Wire.open(target.ws_url, owner.token)
        ack = await writer.request(
            lambda ref: Publish(sphere_id=sphere_id, message_id="after", body="ok", ref=ref)
        )
        await writer.aclose()
        assert isinstance(ack, Ack), ack
        async with asyncio.timeout(REPLY_TIMEOUT_S):
            while not any(m.message_id == "after" for m in received):  # noqa: ASYNC110
                await asyncio.sleep(0.05)  # the wire's reader task appends; no event to await
    finally:
        await healthy.aclose()
    assert target.proc is not None and target.proc.poll() is None, "the server died"
    log = "".join(target.log)
    assert "Traceback" not in log, log[-4000:]
    assert sum(outcomes.values()) >= EXAMPLES // 2, outcomes  # Hypothesis may stop early
    assert "served" in outcomes, outcomes  # both paths were exercised:
    assert any(key.startswith("closed") for key in outcomes), outcomes
    report_line(
        f"hostile malformed: examples {sum(outcomes.values())} "
        + " ".join(f"{k.replace(' ', '-')} {v}" for k, v in sorted(outcomes.items()))
        + f" healthy-worst-ping-ms {worst_rtt_s * 1000:.0f} server-crashes 0"
    )
