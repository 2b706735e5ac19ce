"""OriginPolicy: which browser pages may open a WebSocket (cross-site WebSocket hijacking)."""

from __future__ import annotations

from typing import Any

import pytest

from server.origins import OriginPolicy

HOST = "chat.example.com:8443"


def scope(origin: str | None, host: str | None = HOST) -> dict[str, Any]:
    headers = [(b"user-agent", b"test")]
    if host is not None:
        headers.append((b"host", host.encode("latin-1")))
    if origin is not None:
        headers.append((b"origin", origin.encode("latin-1")))
    return {"type": "websocket", "headers": headers}


def test_no_origin_passes() -> None:
    """Non-browser clients send no Origin; the token is what protects them."""
    assert OriginPolicy(()).allows(scope(None))
    assert OriginPolicy(()).allows(scope(None, host=None))
    assert OriginPolicy(()).allows({"type": "websocket"})


@pytest.mark.parametrize("origin", [f"http://{HOST}", f"https://{HOST}", f"HTTPS://{HOST.upper()}"])
def test_same_host_and_port_passes(origin: str) -> None:
    assert OriginPolicy(()).allows(scope(origin))


def test_same_host_without_port() -> None:
    assert OriginPolicy(()).allows(scope("https://chat.example.com", host="chat.example.com"))
    assert not OriginPolicy(()).allows(scope("https://chat.example.com", host=HOST))


@pytest.mark.parametrize(
    "origin",
    [
        "https://chat.example.com.evil.net:8443",  # suffix
        "https://chat.example.com:8443.evil.net",  # port suffix
        "https://evilchat.example.com:8443",  # prefix
        "https://sub.chat.example.com:8443",  # subdomain
        "https://example.com:8443",  # parent domain
        "https://hat.example.com:8443",  # a suffix of the host
        "https://",  # no host at all
        "https://chat.example.com:8443@evil.net",  # userinfo
        "https://evil.net/chat.example.com:8443",  # path
        "https://chat.example.com:9443",  # other port
        "https://chat.example.com",  # default port
        "ws://chat.example.com:8443",  # other scheme
        "file://chat.example.com:8443",
        "chat.example.com:8443",  # no scheme
        "null",  # sandboxed frames, file:// pages
        "",
    ],
)
def test_foreign_origins_fail(origin: str) -> None:
    assert not OriginPolicy(()).allows(scope(origin))


def test_origin_without_host_header_fails() -> None:
    assert not OriginPolicy(()).allows(scope(f"https://{HOST}", host=None))
    assert not OriginPolicy(()).allows(scope("https://", host=""))


def test_configured_origin_passes_exactly() -> None:
    policy = OriginPolicy(("https://app.example.org", "http://localhost:5173/"))
    assert policy.allows(scope("https://app.example.org"))
    assert policy.allows(scope("HTTPS://APP.EXAMPLE.ORG"))
    assert policy.allows(scope("http://localhost:5173"))  # the configured trailing / is ignored
    for other in (
        "http://app.example.org",  # other scheme
        "https://app.example.org:444",  # other port
        "https://app.example.org.evil.net",  # suffix
        "https://evil-app.example.org",  # prefix
        "https://example.org",  # parent domain
        "http://localhost:5174",
        "null",
    ):
        assert not policy.allows(scope(other)), other


def test_configured_origins_do_not_replace_the_own_origin() -> None:
    assert OriginPolicy(("https://app.example.org",)).allows(scope(f"https://{HOST}"))
