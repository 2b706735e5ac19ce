"""The WebSocket under a connection, reached through the ASGI ``send`` callable.

Theory of operation. A frame normally goes out through the connection's writer task, which
awaits ``send``. That await costs a task switch per frame, the largest cost of a fan-out once
the frame is encoded. When the socket can take data at once, the same ``send`` coroutine runs
to completion without ever suspending: uvicorn's WebSocket protocol waits only on its
"writable" event (set unless the kernel buffer is full), then writes synchronously. So
``send_now`` runs the coroutine in place, as ``websockets.broadcast`` writes in place, and
only when that event is set; otherwise, or on a server that does not expose it, frames take
the writer task. Either way the frames go through the server's own ``send``, in order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine

from starlette.types import Send

from protocol import Wire

logger = logging.getLogger(__name__)


class AsgiTransport:
    """``Transport`` over an ASGI WebSocket ``send``."""

    def __init__(self, send: Send, binary: bool) -> None:
        self._send = send
        self._key = "bytes" if binary else "text"
        self._closed = False
        # uvicorn's websockets-sansio protocol: set while its transport accepts writes.
        writable = getattr(getattr(send, "__self__", None), "writable", None)
        self._writable = writable if isinstance(writable, asyncio.Event) else None

    @property
    def closed(self) -> bool:
        return self._closed

    def send_now(self, wire: Wire) -> bool:
        """Send ``wire`` without suspending if the socket takes it now; False if it cannot.

        Raises:
            RuntimeError: the server's ``send`` suspended although the socket was writable.
        """
        if self._writable is None or not self._writable.is_set() or self._closed:
            return False
        step = self._send({"type": "websocket.send", self._key: wire})
        if not isinstance(step, Coroutine):
            return False  # an unusual server: not safe to drive by hand
        try:
            step.send(None)
        except StopIteration:
            return True
        except OSError:  # the peer is gone (uvicorn's ClientDisconnected is an OSError)
            self._closed = True
            return True
        step.close()
        raise RuntimeError("ASGI send suspended on a writable socket")

    async def send(self, wire: Wire) -> None:
        if self._closed:
            return
        try:
            await self._send({"type": "websocket.send", self._key: wire})
        except OSError:  # the peer is gone (uvicorn's ClientDisconnected is an OSError)
            self._closed = True

    async def close(self, code: int, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._send({"type": "websocket.close", "code": code, "reason": reason})
        except (OSError, RuntimeError):  # already closing: nothing left to tell the peer
            return
