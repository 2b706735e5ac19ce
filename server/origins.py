"""Which browser pages may open a WebSocket to this server (cross-site WebSocket hijacking).

CORS does not apply to WebSockets, so the handshake's ``Origin`` is checked here. A request
without ``Origin`` (not a browser) passes: its token is what protects it. A browser request
passes when its Origin is

- one of the configured origins (``--allowed-origins``) or the origin of ``--public-url``,
  compared as ``scheme://host[:port]`` without case, a trailing ``/`` or a default port; or
- the server's own origin *on a loopback name*: the Origin's host and port equal the ``Host``
  header's, that host is ``localhost``, ``*.localhost``, ``127.0.0.0/8`` or ``[::1]``, and
  its scheme matches the connection's (``http`` for ``ws``, ``https`` for ``wss``).

The ``Host`` header alone proves nothing: a page on a domain the attacker re-points at this
server's address (DNS rebinding) sends a ``Host`` and an ``Origin`` that agree. Only names
that cannot be re-pointed from outside (loopback) or that the operator configured are trusted.
``null`` and every other Origin are refused.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from starlette.types import Scope

_DEFAULT_PORTS = {"http": 80, "https": 443}
_BROWSER_SCHEME = {"ws": "http", "wss": "https", "http": "http", "https": "https"}


def normalize(origin: str) -> str | None:
    """``scheme://host[:port]`` in lower case without a default port, or None if malformed."""
    text = origin.strip().lower()
    if text.endswith("/"):
        text = text[:-1]
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname
    if parts.scheme not in _DEFAULT_PORTS or not host or parts.username is not None:
        return None
    if parts.path or parts.query or parts.fragment or parts.password is not None:
        return None
    if f"{parts.scheme}://{parts.netloc}" != text:
        return None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[parts.scheme]:
        netloc += f":{port}"
    return f"{parts.scheme}://{netloc}"


def is_loopback(host: str) -> bool:
    """True for names that always mean this machine: they cannot be rebound from outside."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class OriginPolicy:
    def __init__(self, allowed: tuple[str, ...], public_url: str = "") -> None:
        configured = (*allowed, public_url) if public_url else allowed
        self._allowed = frozenset(n for n in map(normalize, configured) if n is not None)

    def allows(self, scope: Scope) -> bool:
        headers = dict(scope.get("headers", []))
        raw = headers.get(b"origin")
        if raw is None:
            return True
        origin = normalize(raw.decode("latin-1"))
        if origin is None:
            return False
        if origin in self._allowed:
            return True
        scheme = _BROWSER_SCHEME.get(str(scope.get("scheme", "ws")))
        host = headers.get(b"host", b"").decode("latin-1")
        own = normalize(f"{scheme}://{host}") if scheme and host else None
        if own is None or origin != own:
            return False
        hostname = urlsplit(own).hostname
        return hostname is not None and is_loopback(hostname)
