"""Run the app under uvicorn on a listening socket prepared for real-time traffic."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import uvicorn

from server.app import create_app
from server.config import Config

logger = logging.getLogger(__name__)


class RedactQueryStrings(logging.Filter):
    """uvicorn logs each WebSocket's path with its query string; keep secrets out of logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and "WebSocket %s" in str(record.msg):
            record.args = tuple(
                a.split("?", 1)[0] + "?…" if isinstance(a, str) and "?" in a else a
                for a in record.args
            )
        return True


def redacted(url: str) -> str:
    """A store URL without its password or query, fit for a log line."""
    parts = urlsplit(url)
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


def uvicorn_config(config: Config) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(config),
        ws="websockets-sansio",
        http="httptools",
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
    )


class Server(uvicorn.Server):
    """uvicorn's server, except that a handled SIGTERM/SIGINT ends the process with status 0.

    uvicorn re-raises the signal after its graceful shutdown, which makes a clean stop look
    like a kill to service managers and scripts.
    """

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
    logging.basicConfig(
        level=config.log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s"
    )
    sock = listening_socket(config)
    server = Server(uvicorn_config(config))
    logging.getLogger("uvicorn.error").addFilter(RedactQueryStrings())
    host, port = sock.getsockname()[:2]
    logger.info("listening on %s:%d, store %s", host, port, redacted(config.resolved_store_url))
    server.run(sockets=[sock])
