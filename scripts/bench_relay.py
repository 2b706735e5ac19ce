"""The in-run baseline: a minimal relay on the websockets library's own asyncio server.

It speaks just enough of the Cloison wire protocol (``docs/protocol.md``) for the load
generator to drive it unchanged: ``auth`` gets a ``welcome`` whatever the token, ``subscribe``
gets ``subscribed`` for any sphere id, ``publish`` gets an ``ack`` whose offset is the next
value of a per-sphere counter, and the ``message`` frame is encoded once per encoding and
handed to ``websockets.broadcast()``. ``ping`` gets ``pong``; anything else is ``bad_frame``.

It stores, orders across processes and authorizes nothing, and it keeps no history, so a
``subscribe`` with ``since`` resumes from now. That is the least work a Python relay can do
per delivery, which makes it the ceiling ``scripts/bench/`` measures Cloison against in the
same run, on the same core, with the same generator.

    python -m scripts.bench_relay [--host 127.0.0.1] [--port 0]

Prints ``listening on HOST:PORT`` on stderr once it accepts connections; stops on SIGTERM or
SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import signal
import sys
import time
from typing import Any

import msgpack
import orjson
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from protocol import (
    PROTOCOL_VERSION,
    Ack,
    Codec,
    ConnId,
    ErrorReply,
    EventKind,
    Frame,
    JsonCodec,
    Limits,
    Message,
    MessageId,
    MsgpackCodec,
    Pong,
    SphereId,
    StreamPosition,
    Subscribed,
    Unsubscribed,
    UserId,
    Welcome,
    to_wire,
)

# Why: the same bound as Cloison's default, so both refuse the same oversized frames.
MAX_FRAME_BYTES = 64 * 1024
# Why: as Cloison, a connection that never authenticates is dropped.
AUTH_TIMEOUT_S = 10.0
# Why: Cloison's listening socket uses the same, so connection storms meet the same queue.
LISTEN_BACKLOG = 2048
# Why: every stream of the relay is one incarnation; positions never carry over anyway.
EPOCH = "relay"
LIMITS = Limits(
    max_frame_bytes=MAX_FRAME_BYTES,
    max_message_bytes=16 * 1024,
    publish_rate_per_s=1e9,
    publish_burst=1_000_000_000,
    history_limit_max=200,
    idle_timeout_ms=90_000,
)


class Relay:
    """Sphere id -> subscribed connections, split by encoding so each message is encoded once
    per encoding, not once per recipient."""

    def __init__(self) -> None:
        self._json: dict[str, set[ServerConnection]] = {}
        self._msgpack: dict[str, set[ServerConnection]] = {}
        self._offsets: dict[str, int] = {}
        self._ids = itertools.count(1)

    async def handle(self, ws: ServerConnection) -> None:
        binary = ws.subprotocol == MsgpackCodec.subprotocol
        codec: Codec = MsgpackCodec() if binary else JsonCodec()
        rooms = self._msgpack if binary else self._json
        joined: set[str] = set()
        n = next(self._ids)
        user_id = UserId(f"u_relay_{n}")
        try:
            try:
                async with asyncio.timeout(AUTH_TIMEOUT_S):
                    first = _parse(await ws.recv(), binary)
            except TimeoutError:
                await ws.close(4001, "no auth frame in time")
                return
            if first is None or first.get("type") != "auth":
                await ws.send(codec.encode(_error("unauthorized", "expected auth", None)))
                await ws.close(4500, "expected auth")
                return
            await ws.send(
                codec.encode(
                    Welcome(
                        user_id=user_id,
                        name="relay",
                        conn_id=ConnId(f"c_relay_{n}"),
                        protocol=PROTOCOL_VERSION,
                        server_time_ms=_now_ms(),
                        limits=LIMITS,
                        ref=_ref(first),
                    )
                )
            )
            async for data in ws:
                frame = _parse(data, binary)
                if frame is None:
                    await ws.send(codec.encode(_error("bad_frame", "cannot decode", None)))
                    continue
                reply = self._on_frame(frame, ws, rooms, joined, user_id)
                if reply is not None:
                    await ws.send(codec.encode(reply))
        except ConnectionClosed:
            pass
        finally:
            for sphere_id in joined:
                rooms[sphere_id].discard(ws)

    def _on_frame(
        self,
        frame: dict[str, Any],
        ws: ServerConnection,
        rooms: dict[str, set[ServerConnection]],
        joined: set[str],
        user_id: UserId,
    ) -> Frame | None:
        kind = frame.get("type")
        ref = _ref(frame)
        sphere_id = frame.get("sphere_id")
        if kind == "ping":
            return Pong(server_time_ms=_now_ms(), ref=ref)
        if not isinstance(sphere_id, str) or not sphere_id:
            return _error("bad_frame", "sphere_id: missing", ref)
        if kind == "publish":
            message_id, body = frame.get("message_id"), frame.get("body")
            if not isinstance(message_id, str) or not isinstance(body, str):
                return _error("bad_frame", "message_id and body: expected strings", ref)
            offset = self._offsets[sphere_id] = self._offsets.get(sphere_id, 0) + 1
            ts_ms = _now_ms()
            wire = to_wire(
                Message(
                    sphere_id=SphereId(sphere_id),
                    offset=offset,
                    kind=EventKind.POST,
                    message_id=MessageId(message_id),
                    author_id=user_id,
                    ts_ms=ts_ms,
                    body=body,
                )
            )
            # Encode once per encoding; broadcast() writes the same bytes to every socket.
            if self._json.get(sphere_id):
                broadcast(self._json[sphere_id], orjson.dumps(wire), text=True)
            if self._msgpack.get(sphere_id):
                broadcast(self._msgpack[sphere_id], msgpack.packb(wire))
            return Ack(
                sphere_id=SphereId(sphere_id),
                message_id=MessageId(message_id),
                offset=offset,
                ts_ms=ts_ms,
                ref=ref,
            )
        if kind == "subscribe":
            rooms.setdefault(sphere_id, set()).add(ws)
            joined.add(sphere_id)
            position = StreamPosition(offset=self._offsets.get(sphere_id, 0), epoch=EPOCH)
            return Subscribed(sphere_id=SphereId(sphere_id), position=position, online=[], ref=ref)
        if kind == "unsubscribe":
            rooms.get(sphere_id, set()).discard(ws)
            joined.discard(sphere_id)
            return Unsubscribed(sphere_id=SphereId(sphere_id), reason="requested", ref=ref)
        return _error("bad_frame", "not supported by the relay", ref)


def _parse(data: str | bytes, binary: bool) -> dict[str, Any] | None:
    try:
        if binary:
            if not isinstance(data, bytes):
                return None
            frame = msgpack.unpackb(data)
        else:
            frame = orjson.loads(data)
    except (ValueError, TypeError, msgpack.UnpackException):
        return None
    return frame if isinstance(frame, dict) else None


def _ref(frame: dict[str, Any]) -> str | None:
    ref = frame.get("ref")
    return ref if isinstance(ref, str) and 0 < len(ref) <= 64 else None


def _error(code: str, message: str, ref: str | None) -> ErrorReply:
    return ErrorReply(code=code, message=message, retryable=False, ref=ref)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def run(host: str, port: int) -> None:
    relay = Relay()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with serve(
        relay.handle,
        host,
        port,
        subprotocols=[Subprotocol(JsonCodec.subprotocol), Subprotocol(MsgpackCodec.subprotocol)],
        compression=None,
        max_size=MAX_FRAME_BYTES,
        backlog=LISTEN_BACKLOG,
    ) as server:
        bound_host, bound_port = next(iter(server.sockets)).getsockname()[:2]
        print(f"listening on {bound_host}:{bound_port}", file=sys.stderr, flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench_relay", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        asyncio.run(run(args.host, args.port))
    else:
        uvloop.run(run(args.host, args.port))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
