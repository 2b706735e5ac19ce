"""OriginPolicy: which browser pages may open a WebSocket (cross-site WebSocket hijacking)."""

from __future__ import annotations

from typing import Any

import pytest

from server.origins import OriginPolicy

HOST = "chat.example.com:8443"


PUBLIC = f"https://{HOST}"


def scope(origin: str | None, host: str | None = HOST, scheme: str = "wss") -> dict[str, Any]:
    headers = [(b"user-agent", b"test")]
    if host is not None:
        headers.append((b"host", host.encode("latin-1")))
    if origin is not None:
        headers.append((b"origin", origin.encode("latin-1")))
    return {"type": "websocket", "scheme": scheme, "headers": headers}


def test_no_origin_passes() -> None:
    """Non-browser clients send no Origin; the token is what protects them."""
    assert OriginPolicy(()).allows(scope(None))
    assert OriginPolicy(()).allows(scope(None, host=None))
    assert OriginPolicy(()).allows({"type": "websocket"})


@pytest.mark.parametrize("origin", [PUBLIC, f"HTTPS://{HOST.upper()}", PUBLIC + "/"])
def test_the_public_url_passes(origin: str) -> None:
    assert OriginPolicy((), PUBLIC).allows(scope(origin))
    assert OriginPolicy((), PUBLIC + "/").allows(scope(origin))


def test_same_host_is_not_enough_for_a_public_name() -> None:
    """DNS rebinding: the attacker's name, pointed at this server, sends a matching Host."""
    assert not OriginPolicy(()).allows(scope(PUBLIC))
    rebound = "http://attacker.example:8000"
    assert not OriginPolicy(()).allows(scope(rebound, "attacker.example:8000", "ws"))
    assert not OriginPolicy((), PUBLIC).allows(scope(rebound, "attacker.example:8000", "ws"))


@pytest.mark.parametrize(
    "host", ["127.0.0.1:8000", "localhost:8000", "app.localhost:8000", "[::1]:8000", "127.1.2.3:80"]
)
def test_same_origin_on_a_loopback_name_passes(host: str) -> None:
    assert OriginPolicy(()).allows(scope(f"http://{host}", host, "ws"))
    assert OriginPolicy(()).allows(scope(f"http://{host}/", host, "ws"))
    assert OriginPolicy(()).allows(scope(f"https://{host}", host, "wss"))


def test_same_origin_needs_the_same_scheme() -> None:
    host = "127.0.0.1:8000"
    assert not OriginPolicy(()).allows(scope(f"https://{host}", host, "ws"))
    assert not OriginPolicy(()).allows(scope(f"http://{host}", host, "wss"))


def test_default_ports_are_the_same_origin() -> None:
    assert OriginPolicy(()).allows(scope("http://localhost", "localhost:80", "ws"))
    assert OriginPolicy(()).allows(scope("https://localhost:443", "localhost", "wss"))
    assert OriginPolicy((), "https://chat.example.com").allows(
        scope("https://chat.example.com:443")
    )


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
    assert not OriginPolicy((), PUBLIC).allows(scope(origin))
    loopback = origin.replace("chat.example.com", "localhost")
    assert not OriginPolicy(()).allows(scope(loopback, "localhost:8443"))


def test_origin_without_host_header_fails() -> None:
    assert not OriginPolicy(()).allows(scope("http://localhost:8000", host=None, scheme="ws"))
    assert not OriginPolicy(()).allows(scope("https://", host=""))


def test_configured_origin_passes_exactly() -> None:
    policy = OriginPolicy(("https://app.example.org", "http://localhost:5173/"))
    assert policy.allows(scope("https://app.example.org"))
    assert policy.allows(scope("HTTPS://APP.EXAMPLE.ORG"))
    assert policy.allows(scope("http://localhost:5173"))  # the configured trailing / is ignored
    assert policy.allows(scope("https://app.example.org/"))  # and the sent one
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
    policy = OriginPolicy(("https://app.example.org",), PUBLIC)
    assert policy.allows(scope(PUBLIC))
    assert OriginPolicy(("https://app.example.org",)).allows(
        scope("http://127.0.0.1:8000", "127.0.0.1:8000", "ws")
    )
