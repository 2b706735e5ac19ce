"""Which runner each scenario has, how many connections it opens, and one run under its bound."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable

from scripts.loadtest.probes import Progress, ServerProbe
from scripts.loadtest.report import Report
from scripts.loadtest.scenarios.fanout import scenario_fanout
from scripts.loadtest.scenarios.history import scenario_history
from scripts.loadtest.scenarios.idle import scenario_idle
from scripts.loadtest.scenarios.reconnect import scenario_reconnect
from scripts.loadtest.scenarios.rig import Rig, make_fleet
from scripts.loadtest.scenarios.saturate import scenario_saturate
from scripts.loadtest.targets import Target
from scripts.loadtest.wire import Endpoint, Tasks

SCENARIO_RUNNERS: dict[str, Callable[[Rig], Awaitable[Report]]] = {
    "fanout": scenario_fanout,
    "saturate": scenario_saturate,
    "idle": scenario_idle,
    "reconnect": scenario_reconnect,
    "history": scenario_history,
}


def connections_of(args: argparse.Namespace) -> int:
    if args.scenario in ("fanout", "saturate"):
        return int(args.spheres * args.members)
    if args.scenario == "history":
        return int(args.readers)
    return int(args.connections)


async def run_scenario(args: argparse.Namespace, target: Target) -> Report:
    fleet = make_fleet(args, target, connections_of(args))
    progress = Progress(not args.quiet, fleet, None)
    endpoint = Endpoint.of(target.base_url)
    publish_to = Endpoint.of(args.publish_url) if args.publish_url else endpoint
    rig = Rig(args, target, endpoint, ServerProbe(target.pid), fleet, progress, publish_to)
    tasks = Tasks()
    if progress.enabled:
        tasks.spawn(progress.run())
    try:
        async with asyncio.timeout(args.max_run_s):
            return await SCENARIO_RUNNERS[args.scenario](rig)
    finally:
        await tasks.aclose()
        progress.finish()
        await fleet.aclose()
