"""Subscriber groups in worker processes, driven over pipes, and the fleet of all groups."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.connection
import os
import time
from collections import Counter
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

from scripts.loadtest.accounting import Ranges
from scripts.loadtest.limits import CONNECT_ATTEMPTS, CONNECT_TIMEOUT_S, MAX_SECONDS, LoadError
from scripts.loadtest.process import raise_fd_limit, run_loop
from scripts.loadtest.subscribers import Opened, Seat, Storm, SubscriberGroup, Window
from scripts.loadtest.wire import Endpoint, Tasks

T = TypeVar("T")


class Group(Protocol):
    async def open(self, seats: Sequence[Seat]) -> Opened: ...

    async def collect(self, acked: Mapping[str, Ranges], drain_s: float) -> Window: ...

    async def storm(self) -> Storm: ...

    def live(self) -> tuple[int, int]: ...  # deliveries so far, open connections

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class WorkerPlan:
    base_url: str
    encoding: str
    source_hosts: tuple[str, ...]
    concurrency: int
    cpu: int | None


@dataclass(frozen=True, slots=True)
class OpenCommand:
    seats: list[Seat]


@dataclass(frozen=True, slots=True)
class CollectCommand:
    acked: dict[str, Ranges]
    drain_s: float


@dataclass(frozen=True, slots=True)
class StormCommand:
    pass


@dataclass(frozen=True, slots=True)
class CloseCommand:
    pass


@dataclass(frozen=True, slots=True)
class WorkerFailure:
    message: str


Command = OpenCommand | CollectCommand | StormCommand | CloseCommand
# Why: a worker copies its live counters for the progress line this often.
COUNTER_INTERVAL_S = 0.5


async def pipe_recv(pipe: multiprocessing.connection.Connection) -> object:
    """Wait for the next object on a multiprocessing pipe without blocking the loop."""
    fd = pipe.fileno()
    if not pipe.poll():
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def on_readable() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, on_readable)
        try:
            await ready
        finally:
            loop.remove_reader(fd)
    # The loop made the descriptor non-blocking; the rest of a large message must be waited for.
    os.set_blocking(fd, True)
    return pipe.recv()


def pipe_send(pipe: multiprocessing.connection.Connection, message: object) -> None:
    """Send a whole message; the peer is always reading (commands and replies alternate)."""
    os.set_blocking(pipe.fileno(), True)
    pipe.send(message)


async def gather_all(*aws: Awaitable[T]) -> list[T]:
    """Like gather, but let every awaitable finish before raising the first failure, so no
    sibling is left running against a pipe or connection that is about to close."""
    results = await asyncio.gather(*aws, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return cast(list[T], results)


def _worker_main(
    pipe: multiprocessing.connection.Connection, plan: WorkerPlan, counters: Any
) -> None:
    """Entry point of a generator worker process: serve commands until CloseCommand."""
    if plan.cpu is not None:
        os.sched_setaffinity(0, {plan.cpu})
    raise_fd_limit()
    run_loop(_worker(pipe, plan, counters))


async def _worker(
    pipe: multiprocessing.connection.Connection, plan: WorkerPlan, counters: Any
) -> None:
    group = SubscriberGroup(
        Endpoint.of(plan.base_url), plan.encoding, plan.source_hosts, plan.concurrency
    )

    async def publish_counters() -> None:
        while True:
            counters[0], counters[1] = group.live()
            await asyncio.sleep(COUNTER_INTERVAL_S)

    tasks = Tasks()
    tasks.spawn(publish_counters())
    cpu_mark = time.process_time()
    try:
        while True:
            try:
                command = await pipe_recv(pipe)
            except EOFError:  # the main process is gone
                break
            if isinstance(command, CloseCommand):
                break
            result: object
            try:
                if isinstance(command, OpenCommand):
                    result = await group.open(command.seats)
                elif isinstance(command, CollectCommand):
                    window = await group.collect(command.acked, command.drain_s)
                    now = time.process_time()
                    window.cpu_s, cpu_mark = now - cpu_mark, now
                    result = window
                elif isinstance(command, StormCommand):
                    result = await group.storm()
                else:
                    result = WorkerFailure(f"unknown command {command!r}")
            except (LoadError, OSError, TimeoutError) as exc:
                result = WorkerFailure(f"{type(exc).__name__}: {exc}")
            pipe_send(pipe, result)
    finally:
        await tasks.aclose()
        await group.aclose()
        with contextlib.suppress(OSError):
            pipe_send(pipe, None)


class RemoteGroup:
    """A SubscriberGroup in a worker process, driven over a pipe."""

    def __init__(self, plan: WorkerPlan, name: str) -> None:
        ctx = multiprocessing.get_context("spawn")  # fork would copy the running event loop
        self._pipe, child = ctx.Pipe()
        self._counters = ctx.RawArray("q", 2)
        self._process = ctx.Process(
            target=_worker_main, args=(child, plan, self._counters), name=name, daemon=True
        )
        self._process.start()
        child.close()

    async def _call(self, command: Command, timeout_s: float) -> object:
        pipe_send(self._pipe, command)
        async with asyncio.timeout(timeout_s):
            result = await pipe_recv(self._pipe)
        if isinstance(result, WorkerFailure):
            raise LoadError(f"{self._process.name}: {result.message}")
        if result is None:
            raise LoadError(f"{self._process.name} ended")
        return result

    async def open(self, seats: Sequence[Seat]) -> Opened:
        budget = CONNECT_TIMEOUT_S * CONNECT_ATTEMPTS * (1 + len(seats) / 50)
        result = await self._call(OpenCommand(list(seats)), min(budget, MAX_SECONDS))
        assert isinstance(result, Opened)
        return result

    async def collect(self, acked: Mapping[str, Ranges], drain_s: float) -> Window:
        result = await self._call(CollectCommand(dict(acked), drain_s), drain_s + 60)
        assert isinstance(result, Window)
        return result

    async def storm(self) -> Storm:
        result = await self._call(StormCommand(), MAX_SECONDS)
        assert isinstance(result, Storm)
        return result

    def live(self) -> tuple[int, int]:
        return int(self._counters[0]), int(self._counters[1])

    async def aclose(self) -> None:
        if self._process.is_alive():
            with contextlib.suppress(OSError, TimeoutError, LoadError):
                pipe_send(self._pipe, CloseCommand())
                async with asyncio.timeout(30):
                    await pipe_recv(self._pipe)
        await asyncio.to_thread(self._process.join, 10)
        if self._process.is_alive():
            self._process.kill()
            await asyncio.to_thread(self._process.join, 5)
        self._pipe.close()


class Fleet:
    """All subscriber groups of a run: this process's, or one per worker process."""

    def __init__(self, groups: Sequence[Group]) -> None:
        self.groups = list(groups)
        self.seats_per_sphere: Counter[str] = Counter()

    async def open(self, seats: Sequence[Seat]) -> Opened:
        n = len(self.groups)
        results = await gather_all(*(g.open(seats[i::n]) for i, g in enumerate(self.groups)))
        opened = Opened()
        for result in results:
            opened.merge(result)
        self.seats_per_sphere.update(seat.sphere_id for seat in seats)
        return opened

    async def collect(self, acked: Mapping[str, Ranges], drain_s: float) -> Window:
        results = await gather_all(*(g.collect(acked, drain_s) for g in self.groups))
        window = Window()
        for result in results:
            window.merge(result)
        return window

    async def storm(self) -> Storm:
        storm = Storm()
        for result in await gather_all(*(g.storm() for g in self.groups)):
            storm.merge(result)
        return storm

    def live(self) -> tuple[int, int]:
        counts = [g.live() for g in self.groups]
        return sum(d for d, _ in counts), sum(c for _, c in counts)

    async def aclose(self) -> None:
        await asyncio.gather(*(g.aclose() for g in self.groups))
