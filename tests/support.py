"""Test harness: a real Cloison server process on a free loopback port, and a small client.

The client here is deliberately bare (frames in, frames out) so tests see exactly what the
server sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

from protocol import (
    Auth,
    Batch,
    Codec,
    Frame,
    JsonCodec,
    MsgpackCodec,
    Welcome,
)

TIMEOUT_S = 10.0
_LISTENING = re.compile(r"listening on ([\d.]+):(\d+)")


@dataclass
class ServerProcess:
    """``cloison serve`` in a subprocess, with its data directory."""

    data_dir: Path
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    proc: subprocess.Popen[str] | None = None
    log: list[str] = field(default_factory=list)
    admin_token: str = ""
    verify: ssl.SSLContext | bool = True  # for a server run with TLS

    @property
    def http_url(self) -> str:
        scheme = "https" if isinstance(self.verify, ssl.SSLContext) else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    store_url: str = ""  # empty: the SQLite file in data_dir

    def cli(self, *args: str) -> str:
        where = ["--store-url", self.store_url] if self.store_url else []
        out = subprocess.run(
            [sys.executable, "-m", "server", *args, "--data-dir", str(self.data_dir), *where],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return out.stdout

    def create_admin(self) -> None:
        out = self.cli("user", "create", "admin", "--admin")
        self.admin_token = re.search(r"token:\s+(\S+)", out).group(1)  # type: ignore[union-attr]

    def command(self) -> list[str]:
        """The command line that runs this server."""
        args = [
            sys.executable,
            "-m",
            "server",
            "serve",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--log-level",
            "info",
            *self.extra_args,
        ]
        if self.store_url:
            args += ["--store-url", self.store_url]
        return args

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.proc = subprocess.Popen(
            self.command(), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env
        )
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)
            found = _LISTENING.search(line)
            if found:
                self.port = int(found.group(2))
            if "Application startup complete" in line:
                break
        else:
            # The process ended without starting: reap it, so nothing of it outlives the test.
            self.proc.wait()
            self.proc.stderr.close()
            raise RuntimeError(f"{self.command()[:4]} did not start:\n" + "".join(self.log))
        self._pumper = threading.Thread(target=self._pump, daemon=True)
        self._pumper.start()

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout_s)
        self._pumper.join(timeout_s)
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        return code

    async def wait_stopped(self) -> int:
        return await asyncio.to_thread(self.stop)

    def http(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(
            base_url=self.http_url, headers=headers, timeout=TIMEOUT_S, verify=self.verify
        )

    async def new_user(self, name: str = "", *, bot: bool = False) -> User:
        async with self.http(self.admin_token) as http:
            reply = await http.post(
                "/api/v1/admin/users",
                json={
                    "name": name or f"user-{uuid.uuid4().hex[:6]}",
                    "kind": "bot" if bot else "human",
                },
            )
            reply.raise_for_status()
            data = reply.json()
        return User(self, data["user_id"], data["name"], data["token"])


@dataclass
class User:
    server: ServerProcess
    user_id: str
    name: str
    token: str

    async def connect(self, encoding: str = "json") -> Client:
        return await Client.connect(self.server.ws_url, self.token, encoding)

    async def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async with self.server.http(self.token) as http:
            return await http.request(method, "/api/v1" + path, **kwargs)

    async def create_sphere(self, name: str = "sphere", privacy: str = "private") -> str:
        reply = await self.api("POST", "/spheres", json={"name": name, "privacy": privacy})
        assert reply.status_code == 201, reply.text
        return str(reply.json()["sphere"]["sphere_id"])

    async def add(self, sphere_id: str, other: User, role: str = "member") -> None:
        reply = await self.api(
            "POST", f"/spheres/{sphere_id}/members", json={"user_id": other.user_id, "role": role}
        )
        assert reply.status_code == 200, reply.text


class Client:
    """A bare protocol client: send frames, receive frames (batches unpacked), with timeouts.

    Every client opened is remembered in ``opened`` so the test fixture can close it.
    """

    opened: ClassVar[list[Client]] = []

    def __init__(self, ws: ClientConnection, codec: Codec) -> None:
        self.ws = ws
        self.codec = codec
        self.inbox: list[Frame] = []
        self.welcome: Welcome | None = None
        self._refs = 0

    @classmethod
    async def connect(
        cls, url: str, token: str | None, encoding: str = "json", **kwargs: Any
    ) -> Client:
        codec: Codec = JsonCodec() if encoding == "json" else MsgpackCodec()
        ws = await asyncio.wait_for(
            websockets.connect(url, subprotocols=[codec.subprotocol], max_size=2**22, **kwargs),  # type: ignore[list-item]
            TIMEOUT_S,
        )
        client = cls(ws, codec)
        cls.opened.append(client)
        if token is not None:
            await client.send(Auth(token=token, protocol=1))
            welcome = await client.recv()
            assert isinstance(welcome, Welcome), welcome
            client.welcome = welcome
        return client

    def ref(self) -> str:
        self._refs += 1
        return str(self._refs)

    async def send(self, frame: Frame) -> None:
        await self.send_raw(self.codec.encode(frame))

    async def send_raw(self, data: str | bytes) -> None:
        await asyncio.wait_for(self.ws.send(data), TIMEOUT_S)

    async def recv(self, timeout_s: float = TIMEOUT_S) -> Frame:
        while not self.inbox:
            data = await asyncio.wait_for(self.ws.recv(), timeout_s)
            frame = self.codec.decode_server(data)
            self.inbox.extend(frame.frames if isinstance(frame, Batch) else [frame])
        return self.inbox.pop(0)

    async def expect(self, kind: type[Frame], timeout_s: float = TIMEOUT_S, **match: Any) -> Any:
        """The next frame of ``kind`` (matching ``match``); other frames are kept in order."""
        skipped: list[Frame] = []
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    frame = await self.recv()
                    if isinstance(frame, kind) and all(
                        getattr(frame, k) == v for k, v in match.items()
                    ):
                        return frame
                    skipped.append(frame)
        finally:
            self.inbox[:0] = skipped

    async def request(self, frame: Frame, timeout_s: float = TIMEOUT_S) -> Frame:
        """Send ``frame`` (which must carry a ref) and return the reply with that ref."""
        ref = frame.ref
        assert ref is not None
        await self.send(frame)
        skipped: list[Frame] = []
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    reply = await self.recv()
                    if getattr(reply, "ref", None) == ref:
                        return reply
                    skipped.append(reply)
        finally:
            self.inbox[:0] = skipped

    async def close(self) -> None:
        if self.ws.transport.is_closing():
            return  # already going (a test aborted it, or the server did): nothing to close
        await self.ws.close()


@contextlib.contextmanager
def started(nodes: list[ServerProcess]) -> Iterator[list[ServerProcess]]:
    """Start gateways that share one store: the first makes the admin, all share its token;
    those still running are stopped at the end."""
    try:
        nodes[0].create_admin()
        for node in nodes:
            node.admin_token = nodes[0].admin_token
            node.start()
        yield nodes
    finally:
        for node in nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.stop()


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 15.0) -> None:
    """Poll ``check`` until it is true: for state in another process, no event can be awaited."""
    async with asyncio.timeout(timeout_s):
        while not await check():  # noqa: ASYNC110 - the state lives in another process
            await asyncio.sleep(0.1)


async def pair(server: ServerProcess) -> tuple[User, User, str]:
    """Two users, the first owning a private sphere the second is a member of."""
    alice = await server.new_user("alice")
    bob = await server.new_user("bob")
    sphere_id = await alice.create_sphere("team")
    await alice.add(sphere_id, bob)
    return alice, bob, sphere_id
