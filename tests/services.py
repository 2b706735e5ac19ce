"""Services the tests start and stop themselves, and the shared ones they borrow.

- ``postgres_schema``: a fresh schema on the shared PostgreSQL, dropped afterwards;
- ``own_postgres``: a throwaway PostgreSQL cluster on a free port, for outage tests;
- ``own_redis``: a throwaway ``redis-server`` on a free port, for restart tests.

Each skips the test when its service is missing, or fails it under
``CLOISON_REQUIRE_SERVICES=1`` (see ``tests/conftest.py``). The shared services are never
stopped or flushed: tests keep to their own schema or key prefix.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import secrets
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from tests.conftest import skip_or_fail

# Generous: a test's awaits finish in milliseconds; a hang must fail, not stall the suite.
TIMEOUT_S = 10.0
CLUSTER_TIMEOUT_S = 60.0
POSTGRES_URL = os.environ.get(
    "CLOISON_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("CLOISON_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@asynccontextmanager
async def postgres_schema(dsn: str = POSTGRES_URL) -> AsyncIterator[str]:
    """A fresh schema name on the server at ``dsn``, dropped with its content afterwards."""
    try:
        async with asyncio.timeout(TIMEOUT_S):
            db = await asyncpg.connect(dsn)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        skip_or_fail(f"PostgreSQL unreachable at {dsn}: {exc!r}")
    schema = f"cloison_test_{secrets.token_hex(6)}"
    try:
        yield schema
    finally:
        async with asyncio.timeout(TIMEOUT_S):
            try:
                await db.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            finally:
                await db.close()


def require_shared_redis() -> None:
    """Skip (or fail) unless the shared Redis answers."""
    host, port = "127.0.0.1", 6379
    try:
        with socket.create_connection((host, port), timeout=2) as conn:
            conn.sendall(b"PING\r\n")
            if not conn.recv(16).startswith(b"+PONG"):
                raise OSError("unexpected reply")
    except OSError as exc:
        skip_or_fail(f"Redis unreachable at {host}:{port}: {exc!r}")


@dataclass(eq=False)  # a process: equal only to itself
class RedisServer:
    """A ``redis-server`` of the test's own, without persistence."""

    port: int
    workdir: Path
    process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def options(self) -> list[str]:
        """Options beyond port, address and no persistence (a cluster node adds its own)."""
        return []

    async def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", str(self.workdir), *self.options()]
        self.process = await asyncio.create_subprocess_exec(
            binary, *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        async with asyncio.timeout(TIMEOUT_S):
            # Polling another process: it offers nothing to await until it listens.
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                except OSError:
                    assert self.process.returncode is None, f"redis-server on {self.port} exited"
                    await asyncio.sleep(0.02)
                    continue
                writer.close()
                await writer.wait_closed()
                return

    async def kill(self) -> None:
        """Stop at once (SIGKILL), as a crash would."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            async with asyncio.timeout(TIMEOUT_S):
                await self.process.wait()
        self.process = None


@asynccontextmanager
async def own_redis() -> AsyncIterator[RedisServer]:
    """A redis-server on a free port, killed afterwards."""
    if shutil.which("redis-server") is None:
        skip_or_fail("redis-server not found")
    with tempfile.TemporaryDirectory(prefix="cloison-redis-") as workdir:
        server = RedisServer(free_port(), Path(workdir))
        await server.start()
        try:
            yield server
        finally:
            await server.kill()


@dataclass
class PostgresCluster:
    """A throwaway PostgreSQL cluster on a free loopback port, run by an unprivileged user."""

    bin_dir: Path
    root: Path  # data directory, socket directory and log
    port: int
    run_as: list[str]

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    async def run(self, tool: str, *args: str) -> None:
        process = await asyncio.create_subprocess_exec(
            *self.run_as,
            str(self.bin_dir / tool),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            async with asyncio.timeout(CLUSTER_TIMEOUT_S):
                output, _ = await process.communicate()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert process.returncode == 0, f"{tool} failed:\n{output.decode(errors='replace')}"

    async def init(self) -> None:
        await self.run("initdb", "-D", str(self.root / "data"), "-U", "postgres", "-A", "trust")

    async def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        data, log = str(self.root / "data"), str(self.root / "log")
        await self.run("pg_ctl", "start", "-w", "-D", data, "-l", log, "-o", options)

    async def kill(self) -> None:
        """Stop at once, as a crash would: no checkpoint, clients cut off."""
        await self.run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(self.root / "data"))

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the postmaster and its children (found through Linux's /proc)."""
        postmaster = int((self.root / "data" / "postmaster.pid").read_text().split()[0])
        for entry in Path("/proc").iterdir():
            try:
                # The parent pid follows the state, after the parenthesised command name.
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue  # not a process, or one that has just exited
            if parent == postmaster:
                os.kill(int(entry.name), signum)
        os.kill(postmaster, signum)


def _postgres_bin_dir() -> Path | None:
    found = shutil.which("pg_ctl")
    candidates = [Path(found).resolve().parent] if found else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for candidate in candidates:
        if all((candidate / tool).exists() for tool in ("initdb", "pg_ctl", "postgres")):
            return candidate
    return None


@asynccontextmanager
async def own_postgres() -> AsyncIterator[PostgresCluster]:
    """A PostgreSQL cluster of the caller's own on a free port, removed afterwards."""
    bin_dir = _postgres_bin_dir()
    if bin_dir is None:
        skip_or_fail("PostgreSQL server binaries (initdb, pg_ctl) not found")
    assert bin_dir is not None
    run_as: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="cloison-pg-"))
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        runuser = shutil.which("runuser")
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            owner = None
        if runuser is None or owner is None:
            shutil.rmtree(root)
            skip_or_fail("running as root without runuser or a postgres user")
        assert runuser is not None and owner is not None
        os.chown(root, owner.pw_uid, owner.pw_gid)
        run_as = [runuser, "-u", "postgres", "--"]
    port = free_port()
    cluster = PostgresCluster(bin_dir, root, port, run_as)
    try:
        await cluster.init()
        await cluster.start()
        yield cluster
    finally:
        if (root / "data" / "postmaster.pid").exists():
            await cluster.kill()
        shutil.rmtree(root)
