"""The server sends nothing over the network but to its PostgreSQL and Redis.

Real gateways run a working day (``privacy_scenario.workday``) under ``strace -f``, which
records every ``connect``, ``sendto``, ``sendmsg`` and ``sendmmsg`` system call of every thread
with its destination address: TCP connections, UDP datagrams and DNS lookups (the resolver
connects to the name server, or sends to it) alike. Python's audit hooks would not do: the
server runs on uvloop, whose connections are made by libuv and raise no ``socket.connect``
event. A ``sendto`` on a connected socket names no address: it goes to the peer of a recorded
``connect``, or to a client that connected to the server.

Positive controls: the same tracer catches a TCP connection, a datagram and a DNS lookup that
a traced process is made to attempt, through the standard library and through uvloop (where
an audit hook in that process sees only the former); and the check applied to the cluster's
own trace with Redis left out of the allowed addresses reports the Redis connections.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import skip_or_fail
from tests.e2e.conftest import FAST
from tests.e2e.privacy_scenario import Canaries, workday
from tests.services import POSTGRES_URL, REDIS_URL, postgres_schema, require_shared_redis
from tests.support import ServerProcess, started

_SENDS = {"connect", "sendto", "sendmsg", "sendmmsg"}
# accept4 too: the clients' connections show that the tracer follows the serving process.
_CALLS = "trace=" + ",".join(sorted(_SENDS | {"accept4"}))
# A traced line: the pid, then the call, or the rest of a call another thread interrupted.
_CALL = re.compile(r"^\d+\s+(?:<\.\.\. )?(\w+)")
# One socket address as strace prints it, e.g. {sa_family=AF_INET, sin_port=htons(5432), ...}.
_SOCKADDR = re.compile(r"\{sa_family=(AF_\w+)(.*?)\}")
_PORT = re.compile(r"sin6?_port=htons\((\d+)\)")
_ADDRESS = re.compile(r'inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)"|sun_path="([^"]*)"')
_NETWORK = {"AF_INET", "AF_INET6"}
_ACCEPTED = re.compile(r"\) = \d+$")


@dataclass(frozen=True, order=True)
class Destination:
    family: str
    address: str
    port: int

    def __str__(self) -> str:
        return f"{self.family} {self.address}:{self.port}"


def destinations(trace: str) -> set[Destination]:
    """Every address the traced processes connected or sent to."""
    found = set()
    for line in trace.splitlines():
        call = _CALL.match(line)
        if call is None or call.group(1) not in _SENDS:
            continue
        for family, rest in _SOCKADDR.findall(line):
            port = _PORT.search(rest)
            address = _ADDRESS.search(rest)
            where = next((g for g in address.groups() if g is not None), "") if address else ""
            found.add(Destination(family, where, int(port.group(1)) if port else 0))
    return found


def accepted(trace: str) -> int:
    """How many connections the traced processes accepted."""
    return sum(
        1
        for line in trace.splitlines()
        if (call := _CALL.match(line)) and call.group(1) == "accept4" and _ACCEPTED.search(line)
    )


def foreign(found: set[Destination], allowed: set[tuple[str, int]]) -> list[str]:
    """The network destinations that are not ``allowed`` (address, port) pairs."""
    return sorted(
        str(d) for d in found if d.family in _NETWORK and (d.address, d.port) not in allowed
    )


def address_of(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None, url
    return parts.hostname, parts.port


@functools.cache
def strace() -> str:
    """The strace binary, once it has shown it can trace here (ptrace may be forbidden)."""
    binary = shutil.which("strace")
    if binary is None:
        skip_or_fail("strace not found")
    assert binary is not None
    probe = subprocess.run([binary, "-qq", "-o", os.devnull, "true"], capture_output=True)
    if probe.returncode != 0:
        skip_or_fail(f"strace cannot trace here: {probe.stderr.decode(errors='replace')}")
    return binary


def traced(command: Sequence[str], out: Path) -> list[str]:
    """``command`` under strace: every thread and child, the calls above, no payload bytes."""
    options = ["-f", "-qq", "-s", "0", "-e", _CALLS, "-e", "signal=none", "-o", str(out)]
    return [strace(), *options, *command]


@dataclass
class TracedServer(ServerProcess):
    """A gateway and its admin commands, each run under strace into ``traces``."""

    traces: Path = field(default_factory=Path)
    runs: int = 0

    def command(self) -> list[str]:
        return traced(super().command(), self.next_trace())

    def next_trace(self) -> Path:
        self.runs += 1
        return self.traces / f"{self.data_dir.name}.{self.runs}.trace"

    def cli(self, *args: str) -> str:
        where = ["--store-url", self.store_url] if self.store_url else []
        command = [sys.executable, "-m", "server", *args, "--data-dir", str(self.data_dir)]
        out = subprocess.run(
            traced([*command, *where], self.next_trace()),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return out.stdout

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20) -> int:
        """Signal the server itself, not strace, and let strace end with it."""
        assert self.proc is not None
        if self.proc.poll() is None:
            tracer = self.proc.pid
            for child in Path(f"/proc/{tracer}/task/{tracer}/children").read_text().split():
                os.kill(int(child), sig)
            self.proc.wait(timeout_s)
        return super().stop(sig, timeout_s)

    def trace(self) -> str:
        return "".join(p.read_text() for p in sorted(self.traces.glob(f"{self.data_dir.name}.*")))


def traced_nodes(tmp_path: Path, count: int, extra: Sequence[str], store_url: str = "") -> Iterator:
    traces = tmp_path / "traces"
    traces.mkdir(exist_ok=True)
    for index in range(count):
        node = TracedServer(
            tmp_path / f"node{index}", [*FAST, *extra], store_url=store_url, traces=traces
        )
        node.data_dir.mkdir()
        yield node


@pytest.mark.postgres
@pytest.mark.redis
async def test_a_cluster_talks_only_to_its_postgres_and_redis(tmp_path: Path) -> None:
    require_shared_redis()
    async with postgres_schema() as schema:
        redis = ["--redis-url", REDIS_URL, "--redis-prefix", f"cloison-egress-{schema}:"]
        store_url = f"{POSTGRES_URL}?schema={schema}"
        nodes: list[TracedServer] = list(traced_nodes(tmp_path, 2, redis, store_url))
        with started(list(nodes)):
            await workday(nodes, Canaries())
        for node in nodes:
            node.stop()
    found = set().union(*(destinations(node.trace()) for node in nodes))
    postgres, broker = address_of(POSTGRES_URL), address_of(REDIS_URL)
    assert foreign(found, {postgres, broker}) == []
    network = {(d.address, d.port) for d in found if d.family in _NETWORK}
    assert network == {postgres, broker}  # the trace saw both: the check is not blind
    # Positive control: the same trace, with Redis not allowed, is reported.
    assert foreign(found, {postgres}) == [f"AF_INET {broker[0]}:{broker[1]}"]


async def test_the_embedded_server_makes_no_connection_at_all(tmp_path: Path) -> None:
    (node,) = traced_nodes(tmp_path, 1, [])
    with started([node]):
        await workday([node], Canaries())
    node.stop()
    found = destinations(node.trace())
    assert [str(d) for d in sorted(found) if d.family in _NETWORK] == []
    # The tracer did follow the server: it saw the clients' connections come in.
    assert accepted(node.trace()) >= 3
    # The data directory holds the database and nothing else.
    assert {p.name for p in node.data_dir.iterdir()} <= {
        "cloison.sqlite3",
        "cloison.sqlite3-wal",
        "cloison.sqlite3-shm",
    }


_PROVOKED = """
import asyncio, socket, sys, uvloop
def audit(event, args):
    if event == "socket.connect":
        print("audited", args[1][0])
sys.addaudithook(audit)
tcp = socket.socket()
tcp.setblocking(False)
try:
    tcp.connect(("192.0.2.1", 9))
except OSError:
    pass
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("192.0.2.2", 53))
try:
    socket.getaddrinfo("cloison-egress.invalid", 443)
except OSError:
    pass
async def libuv():
    try:
        async with asyncio.timeout(0.2):
            await asyncio.open_connection("192.0.2.3", 443)
    except (OSError, TimeoutError):
        pass
uvloop.run(libuv())
"""


def test_the_tracer_catches_what_a_process_is_made_to_send(tmp_path: Path) -> None:
    out = tmp_path / "provoked.trace"
    ran = subprocess.run(
        traced([sys.executable, "-c", _PROVOKED], out),
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    )
    caught = foreign(destinations(out.read_text()), set())
    for expected in ("AF_INET 192.0.2.1:9", "AF_INET 192.0.2.2:53", "AF_INET 192.0.2.3:443"):
        assert expected in caught, caught
    # The lookup of a name reached a name server (port 53) beyond the datagram sent above.
    assert any(d.endswith(":53") and "192.0.2.2" not in d for d in caught), caught
    # Python's audit hook sees the standard library's connection, not uvloop's: no use here.
    assert "audited 192.0.2.1" in ran.stdout and "192.0.2.3" not in ran.stdout
