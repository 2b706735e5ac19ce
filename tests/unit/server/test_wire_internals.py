"""The uvicorn internals that server/wire builds on are the ones it was written against.

``server.wire`` subclasses uvicorn's httptools and websockets-sansio protocols, copies two of
their methods with a change (``data_received`` of the first, ``receive`` and
``handle_parser_exception`` of the second) and relies on the behaviour of others (the order in
which ``handle_websocket_upgrade`` builds and starts the WebSocket protocol, ``run_asgi``
leaving a socket with a ``close_timer`` open, ...). A new uvicorn that changes any of them
fails here, by name: re-read the method, adjust server/wire, then update its digest.
"""

from __future__ import annotations

import hashlib
import inspect

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from server.config import Config
from server.wire import Gatekeeper, GuardedHttpProtocol, GuardedWebSocketProtocol, protocol_classes

CLASSES = {c.__name__: c for c in (HttpToolsProtocol, WebSocketsSansIOProtocol)}
# First 16 hex digits of the SHA-256 of each method's source, uvicorn 0.55.0.
DIGESTS = {
    ("HttpToolsProtocol", "data_received"): "010a7ae59a5d3b1a",
    ("HttpToolsProtocol", "handle_websocket_upgrade"): "d5da377bfc77e588",
    ("HttpToolsProtocol", "on_headers_complete"): "1ea8589acfad92d8",
    ("HttpToolsProtocol", "on_message_begin"): "96d377fdc7c2baef",
    ("HttpToolsProtocol", "on_message_complete"): "1fbad42dc31fc01f",
    ("HttpToolsProtocol", "on_header"): "1e86ebb6cea0458c",
    ("HttpToolsProtocol", "connection_made"): "6efb565ff3d36b91",
    ("HttpToolsProtocol", "connection_lost"): "c91a4c9bf2e29c55",
    ("HttpToolsProtocol", "eof_received"): "5652627579a02369",
    ("WebSocketsSansIOProtocol", "receive"): "1dc0e715390021a1",
    ("WebSocketsSansIOProtocol", "handle_parser_exception"): "ff5cf13c764fb332",
    ("WebSocketsSansIOProtocol", "pause_writing"): "4830f7e0d81f877d",
    ("WebSocketsSansIOProtocol", "resume_writing"): "ef79384e5fff077c",
    ("WebSocketsSansIOProtocol", "run_asgi"): "662375aa38d9044c",
    ("WebSocketsSansIOProtocol", "handle_connect"): "fe2a087aa2223cf8",
    ("WebSocketsSansIOProtocol", "handle_ping"): "41bcf345d372c55c",
    ("WebSocketsSansIOProtocol", "data_received"): "d6884fcae2995115",
    ("WebSocketsSansIOProtocol", "connection_made"): "f533ec93747c2cbf",
    ("WebSocketsSansIOProtocol", "connection_lost"): "d0f4179c028b3303",
    ("WebSocketsSansIOProtocol", "send_receive_event_to_app"): "a2b10de91477dc1d",
    ("WebSocketsSansIOProtocol", "send"): "3b8afeb81b9b9ae8",
    ("WebSocketsSansIOProtocol", "eof_received"): "5652627579a02369",
    ("WebSocketsSansIOProtocol", "handle_close"): "62fd412b1f5b9e86",
}


@pytest.mark.parametrize(("cls", "method"), sorted(DIGESTS))
def test_the_uvicorn_methods_we_build_on_are_unchanged(cls: str, method: str) -> None:
    source = inspect.getsource(getattr(CLASSES[cls], method))
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    assert digest == DIGESTS[cls, method], (
        f"uvicorn {uvicorn.__version__} changed {cls}.{method}: server/wire depends on it"
    )


def test_uvicorn_builds_protocols_with_the_arguments_we_accept() -> None:
    source = inspect.getsource(uvicorn.Server.startup)
    for argument in ("config=config", "server_state=self.server_state", "_loop=_loop"):
        assert argument in source
    upgrade = inspect.getsource(HttpToolsProtocol.handle_websocket_upgrade)
    # The hand-off of the ticket needs construction, then connection_made, synchronously.
    assert upgrade.index("self.ws_protocol_class(") < upgrade.index("connection_made(")


def test_uvicorn_config_takes_our_protocol_classes() -> None:
    http, ws = protocol_classes(Gatekeeper.from_config(Config()))
    config = uvicorn.Config(lambda *_: None, http=http, ws=ws)
    config.load()
    assert config.http_protocol_class is http
    assert config.ws_protocol_class is ws
    assert issubclass(http, GuardedHttpProtocol)
    assert issubclass(ws, GuardedWebSocketProtocol)
    # Each server's classes share its own gatekeeper, not another server's.
    other_http, _ = protocol_classes(Gatekeeper.from_config(Config()))
    assert other_http.gatekeeper is not http.gatekeeper
