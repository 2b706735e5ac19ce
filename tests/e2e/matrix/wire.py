"""How the matrix talks to the server: a pipelining WebSocket session, and a frame over HTTP.

Both transports reduce a reply to an ``Answer`` (the reply's type, or the error's code and
message), so one judgement applies to either.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import itertools
import json
import re
import zipfile
from dataclasses import dataclass
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

from protocol import (
    Auth,
    Batch,
    ErrorReply,
    Frame,
    JsonCodec,
    Welcome,
    to_wire,
)
from server.http_api import STATUS
from server.operations import BY_FRAME, Http

# Why: every request of the matrix answers in milliseconds; a case that takes this long is
# stuck, and is reported as such instead of holding up the run.
REQUEST_TIMEOUT_S = 10.0
_PARAM = re.compile(r"\{(\w+)\}")
STATUS_OF = {code.value: status for code, status in STATUS.items()}


@dataclass(frozen=True, slots=True)
class Answer:
    """A reply reduced to what the matrix judges: ``kind`` is a frame type, ``error``, or
    ``timeout``/``closed`` when no reply came."""

    kind: str
    code: str | None = None
    message: str | None = None

    def __str__(self) -> str:
        if self.kind != "error":
            return self.kind
        return f"{self.code} ({self.message!r})"


def answer_of(frame: Frame) -> Answer:
    if isinstance(frame, ErrorReply):
        return Answer("error", frame.code, frame.message)
    return Answer(frame.TYPE)


class Session:
    """One authenticated WebSocket connection that pipelines requests.

    A reader task resolves each request's future by its ``ref``; frames without a pending ref
    (events, presence) are dropped.
    """

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._codec = JsonCodec(max_frame_bytes=1 << 22)
        self._pending: dict[str, asyncio.Future[Frame]] = {}
        self._refs = itertools.count(1)
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str, token: str) -> Session:
        ws, welcome = await handshake(url, Auth(token=token, protocol=1))
        assert welcome.kind == Welcome.TYPE, welcome
        return cls(ws)

    async def request(self, frame: Frame) -> Answer:
        reply = await self.call(frame)
        return reply if isinstance(reply, Answer) else answer_of(reply)

    async def call(self, frame: Frame) -> Frame | Answer:
        """The reply to ``frame``, or an ``Answer`` saying why none came."""
        ref = f"m{next(self._refs)}"
        future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._pending[ref] = future
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                await self._ws.send(self._codec.encode(dataclasses.replace(frame, ref=ref)))  # type: ignore[type-var]
                return await future
        except TimeoutError:
            return Answer("timeout")
        except (websockets.ConnectionClosed, asyncio.CancelledError):
            if asyncio.current_task().cancelling():  # type: ignore[union-attr]
                raise
            return Answer("closed")
        finally:
            self._pending.pop(ref, None)

    async def _read(self) -> None:
        try:
            async for data in self._ws:
                frame = self._codec.decode_server(data)
                for one in frame.frames if isinstance(frame, Batch) else [frame]:
                    future = self._pending.get(getattr(one, "ref", None) or "")
                    if future is not None and not future.done():
                        future.set_result(one)
        except websockets.ConnectionClosed:
            pass
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.cancel()

    async def aclose(self) -> None:
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            await self._ws.close()
            await self._reader


async def handshake(url: str, auth: Frame) -> tuple[ClientConnection, Answer]:
    """A new connection and the answer to its first frame."""
    codec = JsonCodec()
    async with asyncio.timeout(REQUEST_TIMEOUT_S):
        ws = await websockets.connect(url, subprotocols=[codec.subprotocol])  # type: ignore[list-item]
        await ws.send(codec.encode(auth))
        return ws, answer_of(codec.decode_server(await ws.recv()))


async def first_frame(url: str, frame: Frame) -> Answer:
    """The answer to ``frame`` sent as the first frame of a connection of its own."""
    try:
        ws, answer = await handshake(url, frame)
    except TimeoutError:
        return Answer("timeout")
    async with asyncio.timeout(REQUEST_TIMEOUT_S):
        await ws.close()
    return answer


# ---------------------------------------------------------------------------------------------
# HTTP


def route_for(frame: Frame) -> Http | None:
    """The route of the frame's row that carries it (several may; None: WebSocket only)."""
    fields = {k for k in to_wire(frame) if k != "type"}
    for http in BY_FRAME[type(frame)].http:
        in_path = set(_PARAM.findall(http.path))
        if not in_path <= fields:
            continue
        if http.method == "GET" and not fields <= in_path | {*http.query, *http.text_query}:
            continue
        return http
    return None


async def over_http(client: httpx.AsyncClient, frame: Frame, http: Http) -> Answer:
    """Send ``frame`` the way an HTTP client would: path, query and JSON body."""
    wire: dict[str, Any] = to_wire(frame)
    wire.pop("type")
    wire.pop("ref", None)
    path = _PARAM.sub(lambda m: str(wire.pop(m.group(1))), http.path)
    query = {
        name: str(wire.pop(name)).lower() if isinstance(wire.get(name), bool) else wire.pop(name)
        for name in (*http.query, *http.text_query)
        if name in wire
    }
    body = wire if wire else None
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            reply = await _request(client, http.method, "/api/v1" + path, query, body)
    except (TimeoutError, httpx.TimeoutException):
        return Answer("timeout")
    if reply.status_code == 204:
        return Answer("none")
    if http.stream and reply.is_success:
        return archive_answer(frame, reply)
    try:
        data = reply.json()
    except ValueError:
        return Answer("error", f"http {reply.status_code}", reply.text[:80])
    if reply.is_success:
        return Answer(str(data.get("type")))
    code = data.get("code")
    if code not in STATUS_OF or STATUS_OF[code] != reply.status_code:
        # The status must be the code's documented one (docs/protocol.md, section 15).
        return Answer("error", f"{code} with HTTP {reply.status_code}", data.get("message"))
    return Answer("error", code, data.get("message"))


async def _request(
    client: httpx.AsyncClient, method: str, url: str, query: dict[str, Any], body: Any
) -> httpx.Response:
    """The request, sent again once on a new connection when a kept-alive one was closed by
    the server (idle past its keep-alive) just as the request went out, as a client does: no
    answer came, and the server never read the request."""
    for attempt in (1, 2):
        try:
            return await client.request(method, url, params=query or None, json=body)
        except (httpx.ReadError, httpx.RemoteProtocolError):
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def archive_answer(frame: Frame, reply: httpx.Response) -> Answer:
    """A streamed archive stands for the row's reply when it is a whole zip whose manifest
    names the sphere the request named."""
    try:
        with zipfile.ZipFile(io.BytesIO(reply.content)) as archive:
            manifest = json.loads(archive.read("manifest.json"))
    except (zipfile.BadZipFile, KeyError, ValueError):
        return Answer("error", f"http {reply.status_code}", "not a whole archive")
    if reply.headers.get("content-type") != "application/zip":
        return Answer("error", "content-type", reply.headers.get("content-type"))
    if manifest.get("sphere_id") != getattr(frame, "sphere_id", None):
        return Answer("error", "manifest", str(manifest.get("sphere_id")))
    return Answer(BY_FRAME[type(frame)].reply.TYPE)
