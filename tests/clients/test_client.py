"""The SDK against a real server: delivery, resume after a killed server, write retries,
history paging, terminal closes, presence and sphere management."""

from __future__ import annotations

import ast
import asyncio
import itertools
import random
import shutil
import signal
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from clients import (
    Client,
    Connected,
    ConnectionTerminatedError,
    Disconnected,
    PositionLost,
    RequestError,
)
from clients._reconnect import Backoff, Cursor, Verdict, should_reconnect
from clients.client import Encoding, ws_url
from protocol import (
    Ack,
    ErrorCode,
    EventKind,
    Message,
    Presence,
    Privacy,
    Role,
    SphereId,
    StreamPosition,
    Subscribed,
    UserTyping,
)
from tests.clients import TIMEOUT_S, next_event, serving
from tests.support import ServerProcess, User

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
# Reconnect quickly in tests; the defaults are for real networks.
FAST_BACKOFF = Backoff(base_s=0.05, cap_s=0.5)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with serving(tmp_path) as proc:
        yield proc


async def team(server: ServerProcess, *names: str) -> tuple[list[User], SphereId]:
    """Users with ``names``; the first owns a private sphere the others are members of."""
    users = [await server.new_user(name) for name in names]
    sphere_id = SphereId(await users[0].create_sphere("team"))
    for user in users[1:]:
        await users[0].add(sphere_id, user)
    return users, sphere_id


def client(
    server: ServerProcess, user: User, *, encoding: Encoding = "json", max_events: int = 1000
) -> Client:
    return Client(
        server.ws_url, user.token, encoding=encoding, backoff=FAST_BACKOFF, max_events=max_events
    )


async def post(user: User, sphere_id: str, body: str) -> int:
    reply = await user.api(
        "POST", f"/spheres/{sphere_id}/messages", json={"body": body, "message_id": body}
    )
    assert reply.status_code == 201, reply.text
    return int(reply.json()["offset"])


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
async def test_publish_is_acked_and_delivered(server: ServerProcess, encoding: Encoding) -> None:
    (alice, bob), sphere_id = await team(server, "alice", "bob")
    async with (
        client(server, alice, encoding=encoding) as a,
        client(server, bob, encoding=encoding) as b,
    ):
        subscribed = await b.subscribe(sphere_id)
        assert b.user_id in subscribed.online
        assert subscribed.position.offset == 2  # the sphere's creation and bob's addition
        ack = await a.publish(sphere_id, "hello")
        assert (ack.offset, ack.duplicate) == (3, False)
        message = await next_event(b, Message)
        assert (message.offset, message.body, message.author_id) == (3, "hello", alice.user_id)
        assert b.position(sphere_id) == StreamPosition(3, subscribed.position.epoch)


async def test_server_killed_mid_stream_loses_duplicates_and_reorders_nothing(
    server: ServerProcess,
) -> None:
    """SIGKILL the server while one client publishes and another reads, restart it on the
    same port and data: the reader's application sees every message once, in order."""
    (writer_user, reader_user), sphere_id = await team(server, "writer", "reader")
    total, kill_after = 400, 100
    acks: dict[int, Ack] = {}
    got: list[Message] = []
    halfway = asyncio.Event()
    reconnected = 0
    async with (
        client(server, writer_user) as writer,
        client(server, reader_user, encoding="msgpack") as reader,
    ):
        await reader.subscribe(sphere_id)

        async def write_one(n: int, window: asyncio.Semaphore) -> None:
            try:
                acks[n] = await writer.publish(sphere_id, f"m{n}", message_id=f"m{n}")
            finally:
                window.release()

        async def write() -> None:
            # Pipelined, so that several writes are in flight when the server dies.
            window = asyncio.Semaphore(16)
            async with asyncio.TaskGroup() as writes:
                for n in range(total):
                    await window.acquire()
                    writes.create_task(write_one(n, window))

        async def read() -> None:
            nonlocal reconnected
            async for event in reader.events():
                if isinstance(event, Connected) and event.reconnected:
                    reconnected += 1
                if isinstance(event, Message):
                    got.append(event)
                    if len(got) == kill_after:
                        halfway.set()
                    if len(got) == total:
                        return

        async with asyncio.timeout(60), asyncio.TaskGroup() as group:
            group.create_task(write())
            group.create_task(read())
            await halfway.wait()
            await asyncio.to_thread(server.stop, signal.SIGKILL)
            acked_at_kill = len(acks)
            await asyncio.to_thread(server.start)

    offsets = [m.offset for m in got]
    base = 2  # the sphere's creation and the reader's addition
    lost = set(range(base + 1, base + total + 1)) - set(offsets)
    duplicated = len(offsets) - len(set(offsets))
    reordered = sum(1 for a, b in itertools.pairwise(offsets) if b < a)
    assert (len(lost), duplicated, reordered) == (0, 0, 0)
    assert [m.body for m in got] == [f"m{n}" for n in range(total)]
    assert acked_at_kill < total, "the kill should land mid-stream"
    assert reconnected >= 1
    # Each write stored once, in the order it was published, whatever was resent.
    assert [acks[n].offset for n in range(total)] == list(range(base + 1, base + total + 1))


class Relay:
    """A TCP relay in front of the server that can swallow the server's bytes and cut every
    connection: a real network fault between the SDK and a real server."""

    def __init__(self, port: int) -> None:
        self._port = port
        self.swallow = False
        self._links: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._link, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/ws"

    async def _link(self, down_r: asyncio.StreamReader, down_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self._port)
        self._links += [down_w, up_w]
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._pump(down_r, up_w, upstream=True))
                group.create_task(self._pump(up_r, down_w, upstream=False))
        finally:
            self._tasks.discard(task)

    async def _pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, *, upstream: bool
    ) -> None:
        try:
            while data := await src.read(65536):
                if upstream or not self.swallow:
                    dst.write(data)
        except OSError:
            pass  # the other side was cut
        dst.transport.abort()

    def cut(self) -> None:
        for writer in self._links:
            writer.transport.abort()
        self._links.clear()

    async def aclose(self) -> None:
        self._server.close()
        self.cut()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()


async def test_publish_whose_ack_was_lost_is_resent_and_stored_once(server: ServerProcess) -> None:
    (alice, bob), sphere_id = await team(server, "alice", "bob")
    relay = Relay(server.port)
    url = await relay.start()
    try:
        async with (
            Client(url, alice.token, backoff=FAST_BACKOFF) as writer,
            client(server, bob) as observer,
        ):
            await observer.subscribe(sphere_id)
            relay.swallow = True  # the server will store the post; its ack will not arrive
            publishing = asyncio.create_task(writer.publish(sphere_id, "once", message_id="k-1"))
            stored = await next_event(observer, Message)
            relay.cut()  # the connection drops with the ack lost
            relay.swallow = False
            async with asyncio.timeout(TIMEOUT_S):
                ack = await publishing
            assert (ack.offset, ack.message_id, ack.duplicate) == (stored.offset, "k-1", True)
            page = await observer.history_page(sphere_id)
            posts = [(m.offset, m.body) for m in page.messages if m.kind == "post"]
            assert posts == [(stored.offset, "once")]
    finally:
        await relay.aclose()


async def test_history_pages_back_in_time(server: ServerProcess) -> None:
    (alice,), sphere_id = await team(server, "alice")
    async with client(server, alice) as a:
        for n in range(1, 26):  # offsets 2..26, after the sphere's creation
            await a.publish(sphere_id, f"post {n}")
        await a.edit(sphere_id, 6, "post 5, edited")
        await a.delete(sphere_id, 8)
        async with asyncio.timeout(TIMEOUT_S):
            newest_first = [m async for m in a.history(sphere_id, page_size=10)]
            older = [m.offset async for m in a.history(sphere_id, before=12, page_size=4)]
            first_two = []
            async for m in a.history(sphere_id, page_size=3):
                first_two.append(m.offset)
                if len(first_two) == 2:
                    break
    # Posts and the creation's member event; no edits or deletes.
    assert [m.offset for m in newest_first] == list(range(26, 0, -1))
    by_offset = {m.offset: m for m in newest_first}
    assert by_offset[1].kind is EventKind.MEMBER
    assert by_offset[6].body == "post 5, edited"
    assert (by_offset[8].deleted, by_offset[8].body) == (True, None)
    assert older == list(range(11, 0, -1))
    assert first_two == [26, 25]


async def test_slow_application_catches_up_from_its_cursor(server: ServerProcess) -> None:
    """An inbox of 5 events and 60 messages: the overflow is dropped, then replayed."""
    (alice, bob), sphere_id = await team(server, "alice", "bob")
    total = 60
    async with client(server, alice) as a, client(server, bob, max_events=5) as b:
        await b.subscribe(sphere_id)
        for n in range(total):
            await a.publish(sphere_id, f"m{n}")
        await b.ping()  # replies follow the messages queued before them
        got: list[int] = []
        subscriptions = 0
        async with asyncio.timeout(TIMEOUT_S):
            async for event in b.events():
                if isinstance(event, Subscribed):
                    subscriptions += 1
                elif isinstance(event, Message):
                    got.append(event.offset)
                    if len(got) == total:
                        break
    assert got == list(range(3, total + 3))  # after the creation and bob's addition
    assert subscriptions >= 2, "the overflow should have been replayed by a resubscribe"


async def test_restored_backup_is_reported_as_a_lost_position(
    server: ServerProcess, tmp_path: Path
) -> None:
    """The server comes back with fewer messages than the client saw (a restored backup):
    the client reports PositionLost and follows the sphere from the server's position."""
    (alice, bob), sphere_id = await team(server, "alice", "bob")
    backup = tmp_path / "backup"
    async with client(server, bob) as b:
        await b.subscribe(sphere_id)
        for n in range(2):
            await post(alice, sphere_id, f"early {n}")
        assert (await next_event(b, Message, offset=4)).body == "early 1"  # after 2 member events
        await asyncio.to_thread(server.stop)
        shutil.copytree(server.data_dir, backup)
        await asyncio.to_thread(server.start)
        for n in range(3):
            await post(alice, sphere_id, f"late {n}")
        await next_event(b, Message, offset=7)
        await asyncio.to_thread(server.stop)
        shutil.rmtree(server.data_dir)
        shutil.copytree(backup, server.data_dir)
        await asyncio.to_thread(server.start)
        lost = await next_event(b, PositionLost)
        assert (lost.sphere_id, lost.lost.offset, lost.position.offset) == (sphere_id, 7, 4)
        await post(alice, sphere_id, "after the restore")
        message = await next_event(b, Message)
        assert (message.offset, message.body) == (5, "after the restore")


async def test_refused_token_is_terminal(server: ServerProcess) -> None:
    bad = Client(server.ws_url, "clo_0000000000000000_not-a-valid-secret")
    with pytest.raises(ConnectionTerminatedError) as refused:
        await bad.connect()
    assert refused.value.close_code == 4500


async def test_revoked_token_ends_the_client(server: ServerProcess) -> None:
    (alice,), sphere_id = await team(server, "alice")
    token_id = alice.token.split("_")[1]
    async with client(server, alice) as a:
        await a.subscribe(sphere_id)
        async with server.http(server.admin_token) as admin:
            revoked = await admin.delete(f"/api/v1/admin/tokens/{token_id}")
            assert revoked.status_code == 200, revoked.text
        with pytest.raises(ConnectionTerminatedError) as ended:
            await next_event(a, Message)
        assert ended.value.close_code == 4500
        with pytest.raises(ConnectionTerminatedError):
            await a.publish(sphere_id, "too late")


async def test_presence_typing_read_markers_and_spheres(server: ServerProcess) -> None:
    alice, bob = await server.new_user("alice"), await server.new_user("bob")
    async with client(server, alice) as a, client(server, bob) as b:
        sphere = await a.create_sphere("lobby", Privacy.OPEN)
        assert sphere.role is Role.OWNER
        joined = await b.join(sphere.sphere_id)
        assert joined.role is Role.MEMBER
        await a.subscribe(sphere.sphere_id)
        await b.subscribe(sphere.sphere_id)
        await next_event(a, Presence, user_id=bob.user_id, online=True)
        await b.typing(sphere.sphere_id)
        await next_event(a, UserTyping, user_id=bob.user_id)
        for n in range(3):
            await a.publish(sphere.sphere_id, f"news {n}")
        (listed,) = await b.list_spheres()
        assert (listed.sphere_id, listed.unread) == (sphere.sphere_id, 3)
        await b.mark_read(sphere.sphere_id, 5)  # after the creation, bob's joining, 3 posts
        (listed,) = await b.list_spheres()
        assert listed.unread == 0

        private = await a.create_sphere("private")
        await a.add_member(private.sphere_id, bob.user_id)
        members = await a.list_members(private.sphere_id)
        assert {m.user_id for m in members} == {alice.user_id, bob.user_id}
        assert {s.sphere_id for s in await b.list_spheres()} == {
            sphere.sphere_id,
            private.sphere_id,
        }
        await b.leave(private.sphere_id)
        assert [s.sphere_id for s in await b.list_spheres()] == [sphere.sphere_id]
        with pytest.raises(RequestError) as refused:
            await b.publish(private.sphere_id, "not a member")
        assert refused.value.code is ErrorCode.NOT_FOUND

        await b.aclose()
        await next_event(a, Presence, user_id=bob.user_id, online=False)


async def test_subscribe_from_an_unknown_position_is_refused(server: ServerProcess) -> None:
    (alice,), sphere_id = await team(server, "alice")
    async with client(server, alice) as a:
        with pytest.raises(RequestError) as refused:
            await a.subscribe(sphere_id, since=StreamPosition(0, "not-the-epoch"))
        assert refused.value.code is ErrorCode.UNRECOVERABLE_POSITION
        assert a.subscriptions == []


async def test_graceful_restart_reconnects_and_reports_it(server: ServerProcess) -> None:
    (alice,), sphere_id = await team(server, "alice")
    async with client(server, alice) as a:
        await a.subscribe(sphere_id)
        await asyncio.to_thread(server.stop)  # SIGTERM: the server closes with 1012
        gone = await next_event(a, Disconnected)
        assert gone.close_code == 1012
        await asyncio.to_thread(server.start)
        back = await next_event(a, Connected)
        assert back.reconnected
        await post(alice, sphere_id, "still here")
        assert (await next_event(a, Message)).body == "still here"


async def test_rate_limited_writes_wait_and_go_through(tmp_path: Path) -> None:
    with serving(tmp_path, "--publish-rate-per-s", "10", "--publish-burst", "2") as server:
        (alice,), sphere_id = await team(server, "alice")
        async with client(server, alice) as a:
            acks = [await a.publish(sphere_id, f"m{n}", message_id=f"m{n}") for n in range(6)]
    assert [(ack.offset, ack.duplicate) for ack in acks] == [(n, False) for n in range(2, 8)]


async def test_idle_connection_is_kept_open_by_pings(tmp_path: Path) -> None:
    with serving(tmp_path, "--idle-timeout-s", "0.6") as server:
        (alice,), sphere_id = await team(server, "alice")
        async with client(server, alice) as a:
            await a.subscribe(sphere_id)
            await asyncio.sleep(2)  # idle for three idle timeouts: the scenario itself
            await a.publish(sphere_id, "still connected")
            async with asyncio.timeout(TIMEOUT_S):
                async for event in a.events():
                    assert not isinstance(event, Disconnected), event
                    if isinstance(event, Message):
                        break


async def test_no_server_is_a_timeout() -> None:
    unused = Client("ws://127.0.0.1:9/ws", "clo_x_y", connect_timeout_s=0.5)
    with pytest.raises(TimeoutError):
        await unused.connect()


# ---------------------------------------------------------------------------------------------
# The I/O-free parts


def test_backoff_is_jittered_and_capped() -> None:
    rng = random.Random(7)
    backoff = Backoff(base_s=0.5, cap_s=30.0)
    for attempt in range(12):
        delays = [backoff.delay_s(attempt, rng) for _ in range(50)]
        assert all(0 <= d <= min(30.0, 0.5 * 2**attempt) for d in delays)
        assert len(set(delays)) > 1
    assert backoff.delay_s(10_000, rng) <= 30.0


@pytest.mark.parametrize(
    ("code", "reconnect"),
    [
        (None, True),
        (1006, True),
        (1012, True),
        (1011, True),
        (4000, True),
        (4002, True),
        (4499, True),
        (1007, True),
        (1000, False),
        (1002, False),
        (1009, False),
        (4500, False),
        (4501, False),
        (4503, False),
        (4999, False),
    ],
)
def test_close_codes_follow_the_protocol_table(code: int | None, reconnect: bool) -> None:
    assert should_reconnect(code) is reconnect


def test_cursor_delivers_each_offset_once_in_order() -> None:
    cursor = Cursor(SphereId("s"))
    assert cursor.classify(1) is Verdict.UNPOSITIONED
    cursor.position = StreamPosition(3, "e")
    assert [cursor.classify(n) for n in (2, 3, 4, 5)] == [
        Verdict.DUPLICATE,
        Verdict.DUPLICATE,
        Verdict.DELIVER,
        Verdict.GAP,
    ]
    cursor.advance(4)
    assert cursor.position == StreamPosition(4, "e")
    cursor.lagging = True
    assert cursor.classify(5) is Verdict.GAP


def test_urls_are_normalised() -> None:
    assert ws_url("http://h:1") == "ws://h:1/ws"
    assert ws_url("https://h/") == "wss://h/ws"
    assert ws_url("ws://h:1/ws") == "ws://h:1/ws"
    assert ws_url("wss://h/chat/ws") == "wss://h/chat/ws"


def test_sdk_distribution_needs_no_server_dependency() -> None:
    """``sdk/pyproject.toml`` ships ``protocol`` and ``clients`` with three dependencies, and
    nothing in those packages imports a third-party module beyond them."""
    project = tomllib.loads((ROOT / "sdk" / "pyproject.toml").read_text())
    declared = {
        dep.split(">")[0].split("=")[0].strip() for dep in project["project"]["dependencies"]
    }
    assert declared == {"websockets", "orjson", "msgpack"}
    package_dir = project["tool"]["setuptools"]["package-dir"]
    assert {name: (ROOT / "sdk" / path).resolve() for name, path in package_dir.items()} == {
        "protocol": ROOT / "protocol",
        "clients": ROOT / "clients",
    }
    imported: set[str] = set()
    for package in ("protocol", "clients"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    imported.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"protocol", "clients", "__future__"}
    assert third_party <= declared, third_party - declared
    shipped = set(project["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for package in ("protocol", "clients")
        for p in (ROOT / package).rglob("__init__.py")
    }
    # The browser client's files are served by the server; bot authors do not need them.
    assert shipped == on_disk - {"clients.web"}
