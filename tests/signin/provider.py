"""A real OpenID Connect provider for the tests: oidc-provider on Node (``tests/oidc``).

``OidcProvider`` starts ``tests/oidc/provider.mjs`` on a loopback port with the test's clients;
``authorize`` drives its development interactions (the login form, then the consent form)
over HTTP as a browser would, until the provider redirects to the client's redirect URI.
Needs ``node`` and ``npm ci --prefix tests/oidc`` (``.ci/run`` does it); without them the tests
skip, or fail under ``CLOISON_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import shutil
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin

import httpx
import orjson

from tests.conftest import skip_or_fail

NODE_DIR = Path(__file__).resolve().parent.parent / "oidc"
SECRET = "a-client-secret-for-tests-only"
TIMEOUT_S = 10.0
_PROMPT = re.compile(r'name="prompt" value="(\w+)"')


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def require_node() -> None:
    if shutil.which("node") is None:
        skip_or_fail("node is not installed")
    if not (NODE_DIR / "node_modules" / "oidc-provider").is_dir():
        skip_or_fail("oidc-provider is not installed (npm ci --prefix tests/oidc)")


def client(client_id: str, redirect_uri: str) -> dict[str, Any]:
    return {
        "client_id": client_id,
        "client_secret": SECRET,
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
    }


@dataclass
class OidcProvider:
    clients: list[dict[str, Any]]
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    log: list[str] = field(default_factory=list)
    proc: subprocess.Popen[str] | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> OidcProvider:
        require_node()
        env = {
            **os.environ,
            "OIDC_PORT": str(self.port),
            "OIDC_CLIENTS": orjson.dumps(self.clients).decode(),
            "OIDC_ACCOUNTS": orjson.dumps(self.accounts).decode(),
        }
        self.proc = subprocess.Popen(
            ["node", str(NODE_DIR / "provider.mjs")],
            cwd=NODE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.append(line)
            if line.startswith("listening"):
                break
        else:
            self.proc.wait()
            raise RuntimeError("the OpenID Connect provider did not start:\n" + "".join(self.log))
        threading.Thread(target=self._pump, daemon=True).start()
        return self

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.append(line)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(TIMEOUT_S)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


async def authorize(url: str, login: str, *, redirect_prefix: str) -> str:
    """Sign in at the provider as ``login`` and consent; the URL it redirects to (the client's
    callback, with ``code`` and ``state``, or an ``error``)."""
    async with httpx.AsyncClient(follow_redirects=False, timeout=TIMEOUT_S) as browser:
        reply = await browser.get(url)
        for _ in range(12):
            if reply.status_code in (302, 303):
                location = urljoin(str(reply.url), reply.headers["location"])
                if location.startswith(redirect_prefix):
                    return location
                reply = await browser.get(location)
                continue
            assert reply.status_code == 200, (reply.status_code, reply.text[:500])
            prompt = _PROMPT.search(reply.text)
            assert prompt is not None, reply.text[:500]
            form = {"prompt": prompt.group(1)}
            if prompt.group(1) == "login":
                form |= {"login": login, "password": "any password"}
            reply = await browser.post(str(reply.url), data=form)
    raise AssertionError("the provider never redirected back")


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def id_token_for(
    provider: OidcProvider, client_id: str, redirect_uri: str, login: str, nonce: str
) -> str:
    """A real ID token issued to ``client_id``: the flow run by the test as that client."""
    verifier, challenge = pkce_pair()
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": "openid email profile",
        "state": secrets.token_urlsafe(16),
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    back = await authorize(
        f"{provider.issuer}/auth?{urlencode(query)}", login, redirect_prefix=redirect_uri
    )
    code = httpx.URL(back).params["code"]
    async with httpx.AsyncClient(timeout=TIMEOUT_S) as http:
        reply = await http.post(
            f"{provider.issuer}/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
            },
            auth=(client_id, SECRET),
        )
    assert reply.status_code == 200, reply.text
    return str(reply.json()["id_token"])
