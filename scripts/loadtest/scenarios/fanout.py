"""The ``fanout`` scenario: spheres of subscribing members, one phase per offered rate."""

from __future__ import annotations

from scripts.loadtest.report import Report, merge_phases
from scripts.loadtest.scenarios.rig import Rig, _params, fanout_topology, run_phase


async def scenario_fanout(rig: Rig) -> Report:
    args = rig.args
    async with fanout_topology(rig) as (publishers, opened):
        phases = []
        for rate in args.rate:
            rig.progress.label = f"fanout {rate:,.0f} msg/s"
            phases.append(await run_phase(rig, publishers, rate, args.seconds))
        connections = opened.connections + len(publishers.publishers)
    subscribers = args.members  # deliveries per message
    total = merge_phases(phases)
    figures = total.figures(subscribers)
    figures.pop("rate")
    figures = {"connections": connections, "latency_of": "publish to delivery", **figures}
    rows = [p.figures(subscribers) for p in phases]
    params = _params(args, "spheres", "members", "publishers", "seconds", "body_bytes")
    params |= {"rate": args.rate[0] if len(args.rate) == 1 else args.rate}
    params |= _params(args, "encoding", "drain_s", "processes")
    ok = total.window.lost == total.window.duplicated == total.window.reordered == 0
    return Report("fanout", params, figures, rows, ok)
