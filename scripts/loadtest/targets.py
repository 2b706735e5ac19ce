"""What the run measures: a spawned or running server or relay, its admin API, provisioning."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import http.client
import json
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from scripts.loadtest.limits import HTTP_THREADS, UNCAPPED_UNAUTHENTICATED, LoadError
from scripts.loadtest.subscribers import Seat

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Target:
    base_url: str
    pid: int | None
    relay: bool
    admin_token: str | None


class LogTail:
    """Reads a child's stderr in a thread: hands lines over until ``wait_for`` matched, keeps
    the last few for error reports, and never lets the pipe fill up and stall the child."""

    def __init__(self, stream: Iterable[str]) -> None:
        self.lines: deque[str] = deque(maxlen=40)
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._matched = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Iterable[str]) -> None:
        for line in stream:
            self.lines.append(line.rstrip())
            if not self._matched.is_set():
                self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout_s: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LoadError(f"no {pattern!r} within {timeout_s} s: {self.tail()}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise LoadError(f"the process exited: {self.tail()}")
            found = re.search(pattern, line)
            if found:
                self._matched.set()
                return found

    def tail(self) -> str:
        return " | ".join(list(self.lines)[-8:])

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)


SERVER = (sys.executable, "-m", "server")


def _taskset(cpu: str | None) -> list[str]:
    return ["taskset", "-c", cpu] if cpu else []


@contextlib.contextmanager
def spawned(relay: bool, extra: Sequence[str], cpu: str | None) -> Iterator[Target]:
    """A fresh server (or relay) on a free port, stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="cloison-load-") as data_dir:
        token: str | None = None
        if relay:
            command = [sys.executable, "-m", "scripts.bench_relay", "--port", "0"]
        else:
            out = subprocess.run(
                [*SERVER, "user", "create", "load-admin", "--admin", "--data-dir", data_dir],
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            )
            found = re.search(r"token:\s+(\S+)", out.stdout)
            if found is None:
                raise LoadError(f"no admin token in: {out.stdout!r}")
            token = found.group(1)
            command = [*SERVER, "serve", "--port", "0"]
            command += ["--data-dir", data_dir, "--log-level", "info"]
            # Lift the per-user write limits: the generator measures fan-out, not the limiter.
            command += ["--publish-rate-per-s", "1000000", "--publish-burst", "1000000"]
            # And the socket caps: it opens thousands of sockets at once from a few 127.0.0.x
            # addresses (a reconnect storm is all unauthenticated at once).
            command += ["--max-connections-per-address", "0", "--max-unauthenticated-per-address"]
            command += ["0", "--max-unauthenticated", str(UNCAPPED_UNAUTHENTICATED), *extra]
        proc = subprocess.Popen(
            _taskset(cpu) + command, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        assert proc.stderr is not None
        log = LogTail(proc.stderr)
        try:
            port = int(log.wait_for(r"listening on [\d.]+:(\d+)", 60).group(1))
            base = f"http://127.0.0.1:{port}"
            if not relay:
                # The socket listens before the app starts; this waits until it answers.
                urllib.request.urlopen(base + "/healthz", timeout=60).close()
            yield Target(base, proc.pid, relay, token)
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            log.join(5)
            proc.stderr.close()


class Admin:
    """Users, spheres and members through the HTTP API, with an admin token.

    Thread-safe: each thread keeps one keep-alive HTTP connection, so thousands of users cost
    thousands of requests, not thousands of TCP handshakes. ``close`` ends them all.
    """

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.token = token
        parts = urllib.parse.urlsplit(base_url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[http.client.HTTPConnection] = []

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=30)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def call(self, method: str, path: str, body: dict[str, Any], token: str | None = None) -> Any:
        """One request; a 429 is retried after the server's Retry-After (a few times)."""
        headers = {
            "Authorization": f"Bearer {token or self.token}",
            "Content-Type": "application/json",
        }
        for attempt in range(5):
            conn = self._connection()
            try:
                conn.request(method, "/api/v1" + path, json.dumps(body).encode(), headers)
                reply = conn.getresponse()
                data = reply.read()
            except (http.client.HTTPException, OSError) as exc:
                conn.close()  # reconnects on the next request
                if attempt == 4:
                    raise LoadError(f"{method} {path}: {exc}") from None
                continue
            if reply.status == 429 and attempt < 4:
                time.sleep(float(reply.getheader("Retry-After") or 1))  # the server's pacing
                continue
            if reply.status >= 400:
                detail = data.decode(errors="replace")[:200]
                raise LoadError(f"{method} {path}: HTTP {reply.status} {detail}")
            return json.loads(data or b"null")
        raise LoadError(f"{method} {path}: still refused after 5 attempts")

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()

    def user(self, name: str) -> tuple[str, str]:
        data = self.call("POST", "/admin/users", {"name": name, "kind": "bot"})
        return data["user_id"], data["token"]

    def sphere(self, name: str, owner_token: str) -> str:
        data = self.call("POST", "/spheres", {"name": name}, owner_token)
        sphere_id: str = data["sphere"]["sphere_id"]
        return sphere_id

    def add_member(self, sphere_id: str, user_id: str, owner_token: str) -> None:
        self.call("POST", f"/spheres/{sphere_id}/members", {"user_id": user_id}, owner_token)


@dataclass(frozen=True, slots=True)
class Cast:
    """Who connects where: sphere ids, subscriber seats, and one (sphere, token) per writer."""

    sphere_ids: list[str]
    seats: list[Seat]
    writers: list[tuple[str, str]]


async def provision(target: Target, spheres: int, seats: int, writers: int, users_cap: int) -> Cast:
    """Spheres, members and tokens for ``seats`` subscribers spread evenly over ``spheres``
    and ``writers`` publishers (sphere ``w % spheres``). At most ``users_cap`` distinct users
    subscribe; beyond that, connections share users (as one person's several devices do)."""
    per_sphere = [seats // spheres + (1 if s < seats % spheres else 0) for s in range(spheres)]
    if target.relay:
        run_id = os.urandom(3).hex()  # a fresh stream per run, on a relay that outlives it
        sphere_ids = [f"s_relay_{run_id}_{s}" for s in range(spheres)]
        cast_seats = [Seat(sphere_ids[i % spheres], f"relay-{i}", i) for i in range(seats)]
        return Cast(
            sphere_ids, cast_seats, [(sphere_ids[w % spheres], "relay") for w in range(writers)]
        )
    assert target.admin_token is not None
    admin = Admin(target.base_url, target.admin_token)
    loop = asyncio.get_running_loop()
    with (
        concurrent.futures.ThreadPoolExecutor(HTTP_THREADS) as pool,
        contextlib.closing(admin),
    ):

        def run(fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
            return loop.run_in_executor(pool, fn, *args)

        tag = os.urandom(3).hex()
        _, owner_token = await run(admin.user, f"load-owner-{tag}")
        sphere_ids = list(
            await asyncio.gather(
                *(run(admin.sphere, f"load-{tag}-{s}", owner_token) for s in range(spheres))
            )
        )
        users_per_sphere = [max(1, min(n, users_cap // spheres)) for n in per_sphere]
        writer_spheres = [w % spheres for w in range(writers)]
        wanted = [(s, m) for s in range(spheres) for m in range(users_per_sphere[s])]
        wanted += [(s, -1 - w) for w, s in enumerate(writer_spheres)]
        made = await asyncio.gather(*(run(admin.user, f"load-{tag}-{s}-{m}") for s, m in wanted))
        await asyncio.gather(
            *(
                run(admin.add_member, sphere_ids[s], user_id, owner_token)
                for (s, _), (user_id, _) in zip(wanted, made, strict=True)
            )
        )
    tokens = {key: token for key, (_, token) in zip(wanted, made, strict=True)}
    cast_seats = []
    for i in range(seats):
        s = i % spheres
        member = (i // spheres) % users_per_sphere[s]
        cast_seats.append(Seat(sphere_ids[s], tokens[(s, member)], i))
    cast_writers = [(sphere_ids[s], tokens[(s, -1 - w)]) for w, s in enumerate(writer_spheres)]
    return Cast(sphere_ids, cast_seats, cast_writers)
