"""One client connection's outbound side: a byte-bounded queue, its flush, its writer task.

Theory of operation: producers (the hub, request handlers) call ``enqueue`` with frames that
are already encoded; it never blocks. Queued frames are flushed once per event-loop
iteration (``Flusher``): what piled up meanwhile leaves as one ``batch`` frame, so a backlog
costs fewer WebSocket messages and system calls instead of growing, and it is written in
place while the socket takes data (see ``server.transport``). Only when the socket does not
take data is a writer task made, to await it and drain the queue. If the queue would exceed
its byte bound, the connection is aborted with ``SLOW_CONSUMER`` (the client resumes from
its last offset on reconnect); a send that the socket does not accept within
``send_timeout_s`` aborts it the same way (the gateway's sweeper checks every connection's
send in progress), so one stalled reader never holds memory or other clients hostage.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Protocol

from protocol import CloseCode, Codec, ConnId, Frame, UserId, Wire

logger = logging.getLogger(__name__)

# Why: a batch bounded in frames and bytes keeps each WebSocket message small enough for the
# peer's own frame limit and keeps per-message latency low under backlog.
MAX_BATCH_FRAMES = 128
MAX_BATCH_BYTES = 64 * 1024


class Transport(Protocol):
    """What a connection needs from the WebSocket underneath it."""

    def send_now(self, wire: Wire) -> bool:
        """Send without suspending if the socket can take ``wire`` now; else return False."""
        ...

    async def send(self, wire: Wire) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...

    def abort(self) -> None:
        """Drop the socket at once, without a close handshake."""
        ...


class Flusher:
    """Flushes every connection that queued frames during one loop iteration, in one callback.

    One callback per iteration for the whole process, rather than one per connection: a
    fan-out to N connections schedules one handle, not N.
    """

    def __init__(self) -> None:
        self._dirty: list[Connection] = []
        self._loop = asyncio.get_running_loop()

    def mark(self, conn: Connection) -> None:
        if not self._dirty:
            self._loop.call_soon(self._run)
        self._dirty.append(conn)

    def _run(self) -> None:
        dirty, self._dirty = self._dirty, []
        for conn in dirty:
            conn.flush()


class Connection:
    def __init__(
        self,
        conn_id: ConnId,
        user_id: UserId,
        codec: Codec,
        transport: Transport,
        *,
        queue_max_bytes: int,
        send_timeout_s: float,
        flusher: Flusher,
    ) -> None:
        self._flusher = flusher
        self.conn_id = conn_id
        self.user_id = user_id
        self.codec = codec
        self._transport = transport
        self.queue_max_bytes = queue_max_bytes
        self._send_timeout_s = send_timeout_s
        self._queue: deque[Wire] = deque()
        self._queued_bytes = 0
        self._wakeup = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self.close_code: CloseCode | None = None
        self._close_reason = ""
        self._send_started: float | None = None  # loop time of the send in progress, if any
        self.last_seen = asyncio.get_running_loop().time()  # when the peer last sent a frame
        self._writer: asyncio.Task[None] | None = None
        # No writer task, or one waiting for frames: flushes may write in place. The task is
        # made only when a socket cannot take data (or to close): most connections never need
        # one, which saves its memory for every idle connection.
        self._writer_idle = True
        self._flush_scheduled = False
        self._drain_waiting = False  # a replay waits for room in the queue
        self._killed = False

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes

    @property
    def closing(self) -> bool:
        return self.close_code is not None

    def send(self, frame: Frame) -> None:
        """Encode ``frame`` for this connection and queue it."""
        self.enqueue(self.codec.encode(frame))

    def enqueue(self, wire: Wire) -> None:
        """Queue an encoded frame; aborts the connection if its queue would overflow."""
        if self.close_code is not None:
            return
        size = len(wire)
        if self._queued_bytes + size > self.queue_max_bytes:
            logger.info("closing slow consumer", extra={"conn_id": self.conn_id})
            self.abort(CloseCode.SLOW_CONSUMER, "outbound queue full")
            return
        self._queue.append(wire)
        self._queued_bytes += size
        if not self._writer_idle:
            self._wakeup.set()  # the writer is busy with a slow socket; it will get to it
        elif not self._flush_scheduled:
            # Flush at the end of this loop iteration: every frame queued meanwhile (a group
            # commit's worth of events) leaves in one batch, written in place.
            self._flush_scheduled = True
            self._flusher.mark(self)

    def flush(self) -> None:
        """Write the queue in place while the socket takes it; else hand over to the writer."""
        self._flush_scheduled = False
        while self._queue and self.close_code is None and self._writer_idle:
            parts = self._take()
            if not self._transport.send_now(self._wire(parts)):
                # Not writable now: the writer task waits for the socket instead.
                self._untake(parts)
                self._wake_writer()
                return
        self._notify_drained()

    def _notify_drained(self) -> None:
        if self._drain_waiting and self._queued_bytes <= self.queue_max_bytes // 2:
            self._drained.set()

    async def wait_drained(self, below_bytes: int) -> None:
        """Return once the queue holds at most ``below_bytes`` (or the connection is closing)."""
        while self._queued_bytes > below_bytes and self.close_code is None:
            self._drained.clear()
            self._drain_waiting = True
            try:
                await self._drained.wait()
            finally:
                self._drain_waiting = False

    def abort(self, code: CloseCode, reason: str) -> None:
        """Drop what is queued and have the writer close the socket with ``code``."""
        if self.close_code is not None:
            return
        self.close_code = code
        self._close_reason = reason
        self._queue.clear()
        self._queued_bytes = 0
        self._drained.set()
        self._wake_writer()  # it sends the close frame

    def _wake_writer(self) -> None:
        if self._writer is None:
            self._writer = asyncio.create_task(self._run_writer(), name=f"writer {self.conn_id}")
        self._wakeup.set()

    async def aclose(self, timeout_s: float) -> None:
        """Close the socket through the writer (a no-op when the peer already left); stop it."""
        self.abort(CloseCode.NORMAL, "")
        if self._writer is None:
            return
        done, _ = await asyncio.wait({self._writer}, timeout=timeout_s)
        if not done:
            self._writer.cancel()
            await asyncio.wait({self._writer})

    def stalled(self, now: float) -> bool:
        """True when one send has been blocked for longer than ``send_timeout_s``.

        The socket accepts nothing: the peer stopped reading. Checked by the gateway's
        sweeper for all connections at once, which costs far less than a timer per send.
        """
        started = self._send_started
        return started is not None and now - started > self._send_timeout_s

    def kill(self) -> None:
        """Give up on a stalled socket: stop the writer and abort the socket, no handshake.

        Aborting is what frees the socket: the peer reads nothing, so a close frame would
        wait behind the data it never read.
        """
        if self._killed:
            return
        self._killed = True
        logger.info("closing stalled connection", extra={"conn_id": self.conn_id})
        self.abort(CloseCode.SLOW_CONSUMER, "send timed out")
        if self._writer is not None:
            self._writer.cancel()
        self._transport.abort()

    async def _run_writer(self) -> None:
        """Send queued frames until the connection is aborted; then close the socket."""
        loop = asyncio.get_running_loop()
        while True:
            self._writer_idle = True
            await self._wakeup.wait()
            self._writer_idle = False
            self._wakeup.clear()
            while self._queue and self.close_code is None:
                wire = self._wire(self._take())
                self._send_started = loop.time()
                await self._transport.send(wire)
                self._send_started = None
                self._notify_drained()
            if self.close_code is not None:
                self._send_started = loop.time()
                await self._transport.close(self.close_code, self._close_reason)
                self._send_started = None
                return

    def _take(self) -> list[Wire]:
        """The next frames to send together, bounded in count and bytes (at least one)."""
        queue = self._queue
        first = queue.popleft()
        taken = len(first)
        parts = [first]
        while queue and len(parts) < MAX_BATCH_FRAMES and taken + len(queue[0]) <= MAX_BATCH_BYTES:
            wire = queue.popleft()
            taken += len(wire)
            parts.append(wire)
        self._queued_bytes -= taken
        return parts

    def _untake(self, parts: list[Wire]) -> None:
        self._queue.extendleft(reversed(parts))
        self._queued_bytes += sum(len(p) for p in parts)

    def _wire(self, parts: list[Wire]) -> Wire:
        return parts[0] if len(parts) == 1 else self.codec.batch(parts)
