"""What every scenario shares: the rig, the fleet of subscribers, the fan-out topology, a phase."""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from scripts.loadtest.accounting import count_ranges
from scripts.loadtest.fleet import Fleet, Group, RemoteGroup, WorkerPlan
from scripts.loadtest.limits import MAX_USERS, PORTS_PER_SOURCE_IP, LoadError
from scripts.loadtest.probes import Progress, ServerProbe
from scripts.loadtest.publishers import Publishers
from scripts.loadtest.report import Phase
from scripts.loadtest.subscribers import Opened, Seat, SubscriberGroup
from scripts.loadtest.targets import Target, provision
from scripts.loadtest.wire import Endpoint


@dataclass
class Rig:
    """What every scenario drives."""

    args: argparse.Namespace
    target: Target
    endpoint: Endpoint
    probe: ServerProbe
    fleet: Fleet
    progress: Progress
    publish_endpoint: Endpoint  # where publishers connect: another gateway, or the same one

    @property
    def has_server(self) -> bool:
        return self.target.pid is not None


def source_hosts(args: argparse.Namespace, target: Target, connections: int) -> tuple[str, ...]:
    """127.0.0.x source addresses to spread connections over, past the ephemeral-port limit."""
    host = Endpoint.of(target.base_url).uri.host
    if not host.startswith("127."):
        return ()
    count = args.source_ips or -(-connections // PORTS_PER_SOURCE_IP)
    if count <= 1:
        return ()
    return tuple(f"127.0.0.{n}" for n in range(1, min(count, 254) + 1))


def make_fleet(args: argparse.Namespace, target: Target, connections: int) -> Fleet:
    hosts = source_hosts(args, target, connections)
    if args.processes <= 1:
        return Fleet(
            [SubscriberGroup(Endpoint.of(target.base_url), args.encoding, hosts, args.concurrency)]
        )
    cpus = args.taskset_generator or []
    groups: list[Group] = []
    for i in range(args.processes):
        plan = WorkerPlan(
            target.base_url,
            args.encoding,
            hosts,
            max(1, args.concurrency // args.processes),
            cpus[i % len(cpus)] if cpus else None,
        )
        groups.append(RemoteGroup(plan, f"loadtest-worker-{i}"))
    return Fleet(groups)


async def run_phase(rig: Rig, publishers: Publishers, rate: float, seconds: float) -> Phase:
    """Publish at ``rate`` for ``seconds``, then drain and account for every acked offset."""
    cpu0 = rig.probe.cpu_s()
    gen0 = time.process_time()
    started = time.perf_counter()
    offer = await publishers.phase(rate, seconds)
    window = await rig.fleet.collect(offer.acked, rig.args.drain_s)
    elapsed = time.perf_counter() - started
    expected = sum(
        count_ranges(r) * rig.fleet.seats_per_sphere[sphere_id]
        for sphere_id, r in offer.acked.items()
    )
    return Phase(
        offer=offer,
        window=window,
        expected=expected,
        elapsed_s=elapsed,
        server_cpu_s=rig.probe.cpu_s() - cpu0,
        server_rss_mb=rig.probe.rss_mb(),
        generator_cpu_s=time.process_time() - gen0 + window.cpu_s,
        has_server=rig.has_server,
    )


async def connect_subscribers(rig: Rig, seats: Sequence[Seat]) -> Opened:
    """Open a subscriber on every seat; raise ``LoadError`` if any of them failed to connect."""
    rig.progress.label = "connecting"
    opened = await rig.fleet.open(seats)
    if opened.failures:
        raise LoadError(f"{opened.failures} subscribers failed to connect: {opened.first_failure}")
    return opened


@contextlib.asynccontextmanager
async def fanout_topology(rig: Rig) -> AsyncIterator[tuple[Publishers, Opened]]:
    args = rig.args
    rig.progress.label = "provisioning"
    cast = await provision(
        rig.target, args.spheres, args.spheres * args.members, args.publishers, MAX_USERS
    )
    opened = await connect_subscribers(rig, cast.seats)
    publishers = Publishers(rig.publish_endpoint, args.encoding)
    rig.progress.publishers = publishers
    try:
        await publishers.open(cast.writers, args.body_bytes)
        yield publishers, opened
    finally:
        await publishers.aclose()


def _params(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    return {name: getattr(args, name) for name in names}
