"""Two ways to end a socket: a lingering close that lets the peer read our last bytes, and a
reset that frees everything at once."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

# Why: a failed peer may finish sending the frame it was in (the largest a client would send
# is a few MiB); reading more than this for it is work an attacker chose for us.
LINGER_MAX_BYTES = 8 << 20
# SO_LINGER on, zero seconds: close() sends a reset and drops unsent data at once.
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)


def reset(transport: asyncio.WriteTransport) -> None:
    """Abort ``transport`` and have the kernel drop the connection with a reset.

    A plain abort closes the descriptor, but a socket with unsent data (the peer stopped
    reading) then lingers in the kernel, orphaned with its send buffer, until the peer's
    window opens or the kernel gives up minutes later. Zero linger frees it at once.
    """
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # Already closed, or not a TCP socket: the abort alone is what can be done.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
    transport.abort()


def linger(
    transport: asyncio.Transport, loop: asyncio.AbstractEventLoop, linger_s: float
) -> asyncio.TimerHandle:
    """Half-close ``transport`` after what is written, keep reading, abort after ``linger_s``.

    The caller discards what it reads meanwhile, and resets the socket once that passes
    ``LINGER_MAX_BYTES``.

    Closing a socket with unread input makes the kernel send a reset, and a reset can reach
    the peer before it read the last answer. So the write side is shut first (the peer reads
    the answer, then EOF), input is read and discarded by the caller's ``data_received``, and
    the socket closes on the peer's EOF (``eof_received`` returns None) or after ``linger_s``.

    Returns:
        The timer of the abort: cancel it in ``connection_lost``.
    """
    if transport.can_write_eof():
        transport.write_eof()
    transport.resume_reading()
    return loop.call_later(linger_s, transport.abort)
