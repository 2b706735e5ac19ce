"""The shape every hostile run shares: gateways, a sphere, readers, a writer, a fault, a verdict.

``gateways`` starts real ``cloison serve`` processes on one store (and one Redis when given);
``run`` drives the load while ``fault`` does its damage, waits for the readers to catch up with
the store, reads the final history and returns the checker's verdict (already reported).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.conftest import FAST
from tests.hostile.conftest import report
from tests.hostile.driver import Reader, WriteLoad, Writer, final_history
from tests.hostile.history import History, Verdict
from tests.support import ServerProcess, User, pair, started

CATCH_UP_TIMEOUT_S = 60.0  # readers repair from the store after a fault; generous when loaded


@asynccontextmanager
async def gateways(
    tmp_path: Path,
    count: int,
    *,
    store_url: str = "",
    redis_url: str = "",
    extra: Sequence[str] = (),
    envs: Sequence[dict[str, str]] = (),
) -> AsyncIterator[list[ServerProcess]]:
    """``count`` gateway processes sharing one store (and Redis when ``redis_url``).

    Without ``store_url`` each has its own SQLite file (use ``count=1``). ``envs[i]`` is added
    to the environment of node ``i``.
    """
    prefix = f"cloison-hostile-{secrets.token_hex(4)}:"
    redis = ["--redis-url", redis_url, "--redis-prefix", prefix] if redis_url else []
    nodes: list[ServerProcess] = []
    for index in range(count):
        node = ServerProcess(
            tmp_path / f"node{index}",
            extra_args=[*FAST, *redis, *extra],
            store_url=store_url,
            env=dict(envs[index]) if index < len(envs) else {},
        )
        node.data_dir.mkdir(parents=True, exist_ok=True)
        nodes.append(node)
    with started(nodes):
        yield nodes


def restart(node: ServerProcess) -> None:
    """Start ``node`` again on the port it had, after it was stopped or killed."""
    node.proc = None
    node.start()


@dataclass
class Cast:
    """The users of a run: the owner writes, ``readers`` are members, ``outsider`` is not."""

    owner: User
    member: User
    outsider: User
    sphere_id: str
    urls: list[str] = field(default_factory=list)


async def cast(nodes: Sequence[ServerProcess]) -> Cast:
    owner, member, sphere_id = await pair(nodes[0])
    outsider = await nodes[0].new_user("outsider")
    return Cast(owner, member, outsider, sphere_id, [node.ws_url for node in nodes])


Fault = Callable[[Writer], Awaitable[None]]


async def run(
    name: str,
    crew: Cast,
    load: WriteLoad,
    fault: Fault,
    *,
    reader_homes: Sequence[int] = (0,),
    writer_urls: Sequence[Sequence[str]] = (),
    history_url: str | None = None,
    timeout_s: float = 120,
    history: History | None = None,
) -> Verdict:
    """Write ``load`` while ``fault`` runs; return (and report) the verdict.

    One writer per entry of ``writer_urls`` (the gateways it fails over between; default: one
    writer on all of them); ``fault`` is handed the first writer, to time its damage by acks.

    One member reader per entry of ``reader_homes`` (the index of its first gateway, each
    failing over round robin), plus one outsider reader that must receive nothing.
    """
    history = history or History(name)
    readers = [
        Reader(history, f"reader{i}", crew.member.token, crew.urls, crew.sphere_id, home=home)
        for i, home in enumerate(reader_homes)
    ]
    outsider = Reader(
        history, "outsider", crew.outsider.token, crew.urls, crew.sphere_id, allowed=False
    )
    writers = [
        Writer(history, crew.owner.token, urls, crew.sphere_id, prefix=f"w{i}-")
        for i, urls in enumerate(writer_urls or [crew.urls])
    ]
    try:
        for reader in [*readers, outsider]:
            await reader.start()
        assert outsider.refusal is not None and outsider.refusal.code == "not_found"
        started = time.monotonic()
        async with asyncio.timeout(timeout_s):
            async with asyncio.TaskGroup() as group:
                for writer in writers:
                    group.create_task(writer.run(load, timeout_s))
                group.create_task(fault(writers[0]))
        elapsed_s = time.monotonic() - started
        final = await final_history(history_url or crew.urls[0], crew.owner.token, crew.sphere_id)
        end = max((entry.offset for entry in final), default=0)
        for reader in readers:
            with contextlib.suppress(TimeoutError):  # the checker counts what it missed
                await reader.wait_for(end, CATCH_UP_TIMEOUT_S)
    finally:
        for reader in [*readers, outsider]:
            await reader.stop()
    verdict = history.check(final, elapsed_s=elapsed_s)
    report(verdict)
    return verdict


def assert_clean(verdict: Verdict) -> None:
    assert verdict.clean, f"{verdict.summary()}\n" + "\n".join(verdict.problems)
