"""Run the app under uvicorn on a listening socket prepared for real-time traffic."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import socket
from collections.abc import Awaitable, Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import uvicorn

from server import logs
from server.app import CloisonApp, create_app
from server.config import Config
from server.wire import Gatekeeper, protocol_classes

logger = logging.getLogger(__name__)


def redacted(url: str) -> str:
    """A store URL without its password or query, fit for a log line."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        return url.split("?", 1)[0]
    host = parts.hostname or ""
    netloc = f"{parts.username}@{host}" if parts.username else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def listening_socket(config: Config) -> socket.socket:
    """A bound, listening socket whose accepted connections inherit TCP_USER_TIMEOUT.

    TCP_USER_TIMEOUT makes the kernel drop a peer that stops acknowledging data, the one
    remedy for a client that stops reading while the server still has bytes to send it.
    """
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if config.tcp_user_timeout_s > 0 and hasattr(socket, "TCP_USER_TIMEOUT"):
        sock.setsockopt(
            socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(config.tcp_user_timeout_s * 1000)
        )
    sock.bind((config.host, config.port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def uvicorn_config(config: Config, app: CloisonApp, gatekeeper: Gatekeeper) -> uvicorn.Config:
    """uvicorn's settings, with its httptools and websockets-sansio protocols replaced by the
    bounded ones of ``server.wire``, sharing ``gatekeeper``."""
    http, ws = protocol_classes(gatekeeper)
    return uvicorn.Config(
        app,
        ws=ws,
        http=http,
        loop="uvloop",
        lifespan="on",
        ws_max_size=config.max_frame_bytes,
        ws_per_message_deflate=False,
        ws_ping_interval=config.ping_interval_s or None,
        ws_ping_timeout=config.ping_interval_s or None,
        timeout_graceful_shutdown=math.ceil(config.shutdown_timeout_s),
        log_level=config.log_level,
        access_log=False,
        server_header=False,
        log_config=None,  # logs.configure() already routes uvicorn's loggers
        ssl_certfile=config.tls_cert or None,
        ssl_keyfile=config.tls_key or None,
    )


class Server(uvicorn.Server):
    """uvicorn's server, calling ``started`` once it serves, with two changes to shutdown.

    Connections are closed in batches after the server stops accepting, so that clients
    reconnect to the other gateways gradually rather than all at once; and a handled
    SIGTERM/SIGINT ends the process with status 0 (uvicorn re-raises the signal after its
    graceful shutdown, which makes a clean stop look like a kill).
    """

    def __init__(
        self,
        config: uvicorn.Config,
        drain: Callable[[], Awaitable[None]],
        started: Callable[[], None],
    ) -> None:
        super().__init__(config)
        self._drain = drain
        self._started = started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._started()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # stop accepting first, so drained clients go elsewhere
        await self._drain()
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        handled = (signal.SIGINT, signal.SIGTERM)
        for sig in handled:
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)


def run(config: Config) -> None:
    logs.configure(config.log_level, config.log_format)
    sock = listening_socket(config)
    app = create_app(config)

    async def drain() -> None:
        await app.state.runtime.gateway.drain(config.drain_batch, config.drain_interval_s)

    gatekeeper = Gatekeeper.from_config(config)

    def started() -> None:
        """Once the lifespan has built the runtime: gauges of what the gatekeeper counts."""
        metrics = app.state.runtime.metrics
        admission = gatekeeper.admission
        metrics.gauge(
            "cloison_unauthenticated_sockets",
            "Sockets not yet past the WebSocket auth frame",
            lambda: admission.unauthenticated,
        )
        metrics.gauge(
            "cloison_refused_sockets",
            "Sockets refused over a connection cap since the process started",
            lambda: admission.refused,
        )

    server = Server(uvicorn_config(config, app, gatekeeper), drain, started)
    host, port = sock.getsockname()[:2]
    logger.info("listening on %s:%d, store %s", host, port, redacted(config.resolved_store_url))
    server.run(sockets=[sock])
