"""Shard links to the primaries of a Redis Cluster, and the slot map that routes to them.

A ``ShardLink`` is a plain RESP2 connection to one primary in pub/sub mode: commands on it are
matched to their confirmations in order (so ``ssubscribe`` returns only once Redis confirmed
it), a reader task hands ``smessage`` frames on, and a keepalive PING unmasks a silent
(half-open) connection. Any failure ends the link and is reported once through ``on_lost``;
it never reconnects by itself, since only the broker (``server.broker.redis_cluster``) can
tell when frames may have been lost and when the subscriptions are whole again. ``SlotMap``
is the broker's copy of ``CLUSTER SLOTS``; ``startup_nodes`` parses the seed URL.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from redis.asyncio.connection import AbstractConnection, Connection, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.maint_notifications import MaintNotificationsConfig

from server.broker.redis import COMMAND_TIMEOUT_S, PING_INTERVAL_S, PONG_TIMEOUT_S

logger = logging.getLogger(__name__)

# Why: each link is asked for a PONG this often; a dead peer that sent no FIN (host crash,
# partition, a stopped Redis) is noticed within KEEPALIVE_S + PONG_TIMEOUT_S.
KEEPALIVE_S = PING_INTERVAL_S

Address = tuple[str, int]

# Why: redis-py would otherwise send CLIENT MAINT_NOTIFICATIONS on every connect (a round trip
# that Redis 7 refuses) and may reconnect by itself on such notifications.
NO_MAINT_NOTIFICATIONS = MaintNotificationsConfig(enabled=False)

# What can go wrong talking to Redis: its errors (connection, MOVED, CLUSTERDOWN...), socket
# errors, and our own timeouts.
FAULTS = (RedisError, OSError, TimeoutError)


class ShardLostError(Exception):
    """A shard link failed or was closed while a command on it waited for its reply."""


class ClusterNotReadyError(Exception):
    """The cluster does not (yet) serve every slot this broker needs."""


def startup_nodes(url: str) -> tuple[list[Address], dict[str, Any]]:
    """Seed addresses and connection options from ``redis[s]://[user:password@]h1:p1,h2:p2``.

    Any one reachable seed is enough: the rest of the cluster is learnt from it.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("redis", "rediss"):
        raise ValueError(f"not a redis:// or rediss:// URL: {url!r}")
    netloc = rest.split("/", 1)[0].split("?", 1)[0]
    userinfo, at, hosts = netloc.rpartition("@")
    options: dict[str, Any] = {"tls": scheme == "rediss"}
    if at:
        user, colon, password = userinfo.partition(":")
        options["username"] = unquote(user) or None
        options["password"] = unquote(password) if colon else None
    seeds: list[Address] = []
    for item in hosts.split(","):
        host, colon, port = item.rpartition(":")
        if not colon:
            host, port = item, "6379"
        seeds.append((host.strip("[]") or "127.0.0.1", int(port)))
    return seeds, options


@dataclass(frozen=True, slots=True)
class SlotMap:
    """Which primary serves which slot: sorted, non-overlapping ``(first, last, primary)``."""

    ranges: tuple[tuple[int, int, Address], ...]

    @classmethod
    def from_cluster_slots(cls, reply: Sequence[Any], asked: Address) -> SlotMap:
        ranges = []
        for row in reply:
            first, last, primary = int(row[0]), int(row[1]), row[2]
            host = primary[0].decode() if isinstance(primary[0], bytes) else str(primary[0])
            if host == "?":
                continue  # Redis does not know how to reach it: the slots count as uncovered
            # An empty host means "the address you asked me on".
            ranges.append((first, last, (host or asked[0], int(primary[1]))))
        return cls(tuple(sorted(ranges)))

    def owner(self, slot: int) -> Address | None:
        index = bisect.bisect_right(self.ranges, (slot, math.inf)) - 1
        if index >= 0:
            first, last, primary = self.ranges[index]
            if first <= slot <= last:
                return primary
        return None

    @property
    def primaries(self) -> set[Address]:
        return {primary for _, _, primary in self.ranges}


@dataclass(slots=True)
class _Expected:
    """One confirmation a link waits for, in the order Redis will send it."""

    kind: bytes  # b"ssubscribe", b"sunsubscribe" or b"pong"
    channel: bytes | None
    done: asyncio.Future[None]
    last: bool  # the command's last confirmation: resolves ``done``


class ShardLink:
    """A pub/sub connection to one primary: shard subscriptions out, ``smessage`` frames in.

    ``on_lost`` is called once if the link fails; a link is never reconnected, the broker
    replaces it.
    """

    def __init__(
        self,
        address: Address,
        conn: AbstractConnection,
        *,
        on_message: Callable[[bytes, bytes], None],
        on_lost: Callable[[ShardLink, str], None],
    ) -> None:
        self.address = address
        self.channels: set[bytes] = set()  # subscribed or being subscribed on this link
        self.closed = False
        self._conn = conn
        self._on_message = on_message
        self._on_lost = on_lost
        self._expected: deque[_Expected] = deque()
        self._send_lock = asyncio.Lock()  # replies are matched in the order commands are sent
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    async def open(
        cls,
        address: Address,
        options: dict[str, Any],
        *,
        on_message: Callable[[bytes, bytes], None],
        on_lost: Callable[[ShardLink, str], None],
    ) -> ShardLink:
        conn = connection(address, options, socket_timeout=None)  # reads block; we time out
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                await conn.connect()  # type: ignore[no-untyped-call]
                await conn.send_command("CLUSTER", "INFO", check_health=False)
                info = await conn.read_response()
        except BaseException:
            await conn.disconnect(nowait=True)
            raise
        if not isinstance(info, bytes) or b"cluster_state:ok" not in info:
            await conn.disconnect(nowait=True)
            raise ClusterNotReadyError(f"{address[0]}:{address[1]} reports the cluster down")
        link = cls(address, conn, on_message=on_message, on_lost=on_lost)
        name = f"{address[0]}:{address[1]}"
        link._tasks = [
            asyncio.create_task(link._read_loop(), name=f"shard link reader {name}"),
            asyncio.create_task(link._keepalive(), name=f"shard link keepalive {name}"),
        ]
        return link

    async def ssubscribe(self, channels: Iterable[bytes]) -> None:
        """Subscribe, returning once Redis has confirmed every channel."""
        todo = [channel for channel in channels if channel not in self.channels]
        self.channels.update(todo)
        # One command per channel: SSUBSCRIBE of several channels must not cross slots.
        await self._command(b"ssubscribe", [(b"SSUBSCRIBE", channel) for channel in todo])

    async def sunsubscribe(self, channels: Iterable[bytes]) -> None:
        todo = [channel for channel in channels if channel in self.channels]
        self.channels.difference_update(todo)
        await self._command(b"sunsubscribe", [(b"SUNSUBSCRIBE", channel) for channel in todo])

    def fail(self, why: str) -> None:
        """The link is broken: stop using it and tell the broker (once)."""
        if self.closed:
            return
        self._close(ShardLostError(why))
        self._on_lost(self, why)

    async def aclose(self) -> None:
        """Close without reporting a loss (the broker is replacing or dropping this link)."""
        self._close(ShardLostError("link closed"))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(*FAULTS):
            await self._conn.disconnect(nowait=True)

    # -- internals ---------------------------------------------------------------------------

    def _close(self, error: ShardLostError) -> None:
        self.closed = True
        while self._expected:
            done = self._expected.popleft().done
            if not done.done():
                done.set_exception(error)

    async def _command(self, kind: bytes, commands: list[tuple[bytes, ...]]) -> None:
        """Send ``commands``, returning once each has been confirmed by a ``kind`` reply."""
        if not commands:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        async with self._send_lock:
            if not self.closed and not self._conn.is_connected:
                # redis-py would silently reconnect, without our subscriptions.
                self.fail("connection closed")
            if self.closed:
                raise ShardLostError("link closed")
            for index, command in enumerate(commands):
                channel = command[1] if len(command) > 1 else None
                self._expected.append(_Expected(kind, channel, done, index == len(commands) - 1))
            try:
                await self._conn.send_packed_command(
                    self._conn.pack_commands(commands), check_health=False
                )
            except FAULTS as exc:
                self.fail(f"send failed: {describe(exc)}")
        await done

    async def _read_loop(self) -> None:
        while not self.closed:
            try:
                reply = await self._conn.read_response(timeout=math.inf)  # no idle timeout
            except FAULTS as exc:
                self.fail(f"read failed: {describe(exc)}")
                return
            self._dispatch(reply)

    def _dispatch(self, reply: Any) -> None:
        if isinstance(reply, list) and reply and reply[0] == b"smessage":
            self._on_message(reply[1], reply[2])
            return
        if reply == b"PONG":  # PING outside pub/sub mode (no shard channel subscribed)
            kind, channel = b"pong", None
        elif isinstance(reply, list) and len(reply) >= 2:
            kind = reply[0]
            channel = reply[1] if kind in (b"ssubscribe", b"sunsubscribe") else None
        else:
            self.fail(f"unexpected {type(reply).__name__} reply")
            return
        expected = self._expected[0] if self._expected else None
        if expected is None or (expected.kind, expected.channel) != (kind, channel):
            # Redis unsubscribes us by itself when the channel's slot leaves this primary.
            self.fail(f"unsolicited {kind.decode(errors='replace')} (slot moved?)")
            return
        self._expected.popleft()
        if expected.last and not expected.done.done():
            expected.done.set_result(None)

    async def _keepalive(self) -> None:
        while not self.closed:
            await asyncio.sleep(KEEPALIVE_S)
            try:
                async with asyncio.timeout(PONG_TIMEOUT_S):
                    await self._command(b"pong", [(b"PING",)])
            except TimeoutError:
                self.fail(f"no answer to PING in {PONG_TIMEOUT_S:g} s")
                return
            except ShardLostError:
                return


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def connection(
    address: Address, options: dict[str, Any], *, socket_timeout: float | None
) -> AbstractConnection:
    kwargs: dict[str, Any] = {
        "host": address[0],
        "port": address[1],
        "username": options.get("username"),
        "password": options.get("password"),
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": COMMAND_TIMEOUT_S,
        "protocol": 2,  # pub/sub frames as plain replies, matched by the reader
        # No hidden retries or reconnects: a failure must reach the broker, which resyncs.
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 0,
        "maint_notifications_config": NO_MAINT_NOTIFICATIONS,
    }
    if options.get("tls"):
        return SSLConnection(**kwargs)
    return Connection(**kwargs)
