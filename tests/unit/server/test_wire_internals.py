"""The uvicorn internals that server/wire builds on are the ones it was written against.

``server.wire`` subclasses uvicorn's httptools and websockets-sansio protocols, copies some of
their methods with a change (``data_received`` of the first; ``receive``, ``run_asgi``,
``handle_parser_exception`` and ``send_receive_event_to_app`` of the second) and relies on the
behaviour of others (the order in which ``handle_websocket_upgrade`` builds and starts the
WebSocket protocol, ``send`` leaving a socket with a ``close_timer`` open, ``__init__``
building ``self.conn``, ...). It also overrides websockets' ``Protocol.recv_frame`` for a
close frame inside a fragmented message. A new uvicorn or websockets that changes any of them
fails here, by name: re-read the method, adjust server/wire, then update its digest.
"""

from __future__ import annotations

import hashlib
import inspect

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import Protocol
from websockets.server import ServerProtocol
from websockets.version import version as websockets_version

from server.config import Config
from server.wire import Gatekeeper, GuardedHttpProtocol, GuardedWebSocketProtocol, protocol_classes
from server.wire.websocket import ConformingServerProtocol

CLASSES = {c.__name__: c for c in (HttpToolsProtocol, WebSocketsSansIOProtocol, Protocol)}
# First 16 hex digits of the SHA-256 of each method's source, uvicorn 0.55.0, websockets 17.4.
DIGESTS = {
    ("Protocol", "recv_frame"): "4f83d3b90ea62428",
    ("WebSocketsSansIOProtocol", "__init__"): "631dcd744eab875f",
    ("WebSocketsSansIOProtocol", "handle_events"): "b2c9351a5d13493f",
    ("WebSocketsSansIOProtocol", "handle_text"): "6ae523180cf04a01",
    ("WebSocketsSansIOProtocol", "handle_cont"): "d96fe1479da61beb",
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
        f"uvicorn {uvicorn.__version__} / websockets {websockets_version} changed "
        f"{cls}.{method}: server/wire depends on it"
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


UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def _opened(conn: ServerProtocol) -> ServerProtocol:
    conn.receive_data(UPGRADE)
    (request,) = conn.events_received()
    assert isinstance(request, Request)
    conn.send_response(conn.accept(request))
    conn.data_to_send()
    return conn


def _client_frame(opcode: Opcode, data: bytes, *, fin: bool = True) -> bytes:
    return Frame(opcode, data, fin=fin).serialize(mask=True, extensions=[])


def test_a_close_inside_a_fragmented_message_is_echoed_and_the_rest_discarded() -> None:
    conn = _opened(ConformingServerProtocol())
    conn.receive_data(
        _client_frame(Opcode.TEXT, b"fragment1", fin=False)
        + _client_frame(Opcode.CLOSE, Close(1000, "").serialize())
        + _client_frame(Opcode.CONT, b"fragment2")
    )
    assert conn.parser_exc is None
    assert conn.close_rcvd is not None and conn.close_rcvd.code == 1000
    assert conn.close_sent is not None and conn.close_sent.code == 1000  # echoed, not 1002
    opcodes = [event.opcode for event in conn.events_received() if isinstance(event, Frame)]
    assert opcodes == [Opcode.TEXT, Opcode.CLOSE]  # the fragment after the close: discarded
    written = b"".join(conn.data_to_send())
    assert written[:2] == b"\x88\x02" and written[2:4] == (1000).to_bytes(2, "big")


def test_the_stock_protocol_still_fails_that_case_with_1002() -> None:
    """When this fails, websockets conforms by itself: drop ConformingServerProtocol."""
    conn = _opened(ServerProtocol())
    conn.receive_data(
        _client_frame(Opcode.TEXT, b"fragment1", fin=False)
        + _client_frame(Opcode.CLOSE, Close(1000, "").serialize())
    )
    assert conn.close_sent is not None and conn.close_sent.code == 1002
