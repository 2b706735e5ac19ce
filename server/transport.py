"""The WebSocket under a connection, reached through the ASGI ``send`` callable.

Theory of operation. A frame normally goes out through the connection's writer task, which
awaits ``send``: a task switch, an ASGI message and two coroutines per frame, the largest
cost of a fan-out once the frame is encoded. uvicorn's WebSocket protocol (websockets-sansio)
does nothing more for a ``websocket.send`` than frame the payload with its websockets
``ServerProtocol`` and write the bytes to its transport, once its "writable" event is set.
So, when that protocol is what serves the connection and its transport takes data now,
``send_now`` does the same two steps in place, as ``websockets.broadcast`` does for its own
connections. Anything else (another server, a paused or closing transport) takes the writer
task. Frames leave in order either way: the connection uses one path at a time.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import Send
from websockets.exceptions import InvalidState

from protocol import Wire
from server.wire.closing import reset


def _uvicorn_protocol(send: Send) -> Any | None:
    """uvicorn's websockets-sansio protocol behind ``send``, if that is what serves it."""
    proto = getattr(send, "__self__", None)
    conn = getattr(proto, "conn", None)
    needed = ("send_text", "send_binary", "data_to_send")
    if (
        isinstance(getattr(proto, "writable", None), asyncio.Event)
        and all(callable(getattr(conn, name, None)) for name in needed)
        and hasattr(proto, "transport")
        and hasattr(proto, "close_sent")
    ):
        return proto
    return None


class AsgiTransport:
    """``Transport`` over an ASGI WebSocket ``send``."""

    def __init__(self, send: Send, binary: bool) -> None:
        self._send = send
        self._binary = binary
        self._key = "bytes" if binary else "text"
        self._closed = False
        self._proto = _uvicorn_protocol(send)

    def send_now(self, wire: Wire) -> bool:
        """Write ``wire`` in place if the socket takes data now; False if it cannot."""
        proto = self._proto
        if (
            proto is None
            or self._closed
            or proto.close_sent
            or not proto.writable.is_set()
            or proto.transport.is_closing()
        ):
            return False
        data = wire.encode() if isinstance(wire, str) else wire
        try:
            if self._binary:
                proto.conn.send_binary(data)
            else:
                proto.conn.send_text(data)
        except InvalidState:  # the WebSocket is closing: nothing more to send
            self._closed = True
            return True
        proto.transport.write(b"".join(proto.conn.data_to_send()))
        return True

    async def send(self, wire: Wire) -> None:
        if self._closed:
            return
        try:
            await self._send({"type": "websocket.send", self._key: wire})
        except OSError:  # the peer is gone (uvicorn's ClientDisconnected is an OSError)
            self._closed = True

    def abort(self) -> None:
        """Drop the socket without a close handshake: its peer accepts nothing."""
        self._closed = True
        if self._proto is not None:
            reset(self._proto.transport)

    async def close(self, code: int, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._send({"type": "websocket.close", "code": code, "reason": reason})
        except (OSError, RuntimeError):  # already closing: nothing left to tell the peer
            return
