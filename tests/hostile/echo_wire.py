"""An echo application served by the gateway's own transport, for the framing conformance cases.

Most Autobahn cases judge what a server does with a message by its echo, and the gateway
answers a first frame that is not ``auth`` with an error and close 4500. This process serves
an echo application on exactly the transport the gateway runs on: ``server.runner``'s
``uvicorn_config`` and ``listening_socket`` (the ``server.wire`` protocol classes, the frame
size limit, keepalive, TCP_USER_TIMEOUT), with default ``Config`` values. Only the ASGI
application differs, so what the cases measure is the real transport layer.

Two more paths leave an accepted WebSocket open, raising or returning, to show how the
transport ends it (tests/hostile/test_transport_app_exit.py).

Run: ``python -m tests.hostile.echo_wire [PORT]`` (0, the default, picks a free port); it logs
``listening on HOST:PORT`` and uvicorn's ``Application startup complete``.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Any, cast

import uvicorn
from uvicorn.protocols.utils import ClientDisconnected

from server import logs
from server.app import CloisonApp
from server.config import Config
from server.runner import listening_socket, uvicorn_config
from server.wire import Gatekeeper
from tests.support import ServerProcess

logger = logging.getLogger("tests.hostile.echo_wire")

Receive = Any
Send = Any


RAISE_PATH = "/raise"  # accepts, then the application raises
RETURN_PATH = "/return"  # accepts, then the application returns without closing


class ApplicationFault(Exception):
    """What the application at ``RAISE_PATH`` raises."""


async def echo_app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Accept every WebSocket and send each message back as it came (text or binary); at
    ``RAISE_PATH`` and ``RETURN_PATH``, leave the accepted WebSocket open instead."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "websocket":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    if scope["path"] == RAISE_PATH:
        raise ApplicationFault("the application failed after accepting")
    if scope["path"] == RETURN_PATH:
        return
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        reply = {"type": "websocket.send", "text": message.get("text")}
        if message.get("bytes") is not None:
            reply = {"type": "websocket.send", "bytes": message["bytes"]}
        try:
            await send(reply)
        except ClientDisconnected:
            return
        except RuntimeError:
            # uvicorn refuses a send after its own close frame: the transport failed the
            # connection (a later frame was invalid) while this message was queued.
            return


@dataclass
class EchoWireProcess(ServerProcess):
    """This module in a subprocess; ``ws_url``, ``log`` and ``stop`` as for the real server."""

    def command(self) -> list[str]:
        return [sys.executable, "-m", "tests.hostile.echo_wire", str(self.port)]


def main() -> None:
    config = Config(port=int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    logs.configure(config.log_level, config.log_format)
    sock = listening_socket(config)
    gatekeeper = Gatekeeper.from_config(config)
    server = uvicorn.Server(uvicorn_config(config, cast(CloisonApp, echo_app), gatekeeper))
    host, port = sock.getsockname()[:2]
    logger.info("listening on %s:%d", host, port)
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
