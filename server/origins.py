"""Which browser pages may open a WebSocket to this server (cross-site WebSocket hijacking).

CORS does not apply to WebSockets, so the handshake's ``Origin`` is checked here: a request
without ``Origin`` (not a browser) passes; a browser request passes when its Origin is the
server's own (same scheme-less host and port as the ``Host`` header) or exactly one of the
configured origins. ``null`` and every other Origin are refused.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import Scope


class OriginPolicy:
    def __init__(self, allowed: tuple[str, ...]) -> None:
        self._allowed = frozenset(o.rstrip("/").lower() for o in allowed)

    def allows(self, scope: Scope) -> bool:
        headers = dict(scope.get("headers", []))
        raw = headers.get(b"origin")
        if raw is None:
            return True
        origin = raw.decode("latin-1").strip().lower()
        if origin in self._allowed:
            return True
        host = headers.get(b"host", b"").decode("latin-1").strip().lower()
        parts = urlsplit(origin)
        return bool(host) and parts.scheme in ("http", "https") and parts.netloc == host
