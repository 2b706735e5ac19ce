"""The ``idle`` scenario: N subscribed connections at rest; the server's RSS per 1,000."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from scripts.loadtest.report import Report
from scripts.loadtest.scenarios.rig import Rig, _params
from scripts.loadtest.targets import provision


async def scenario_idle(rig: Rig) -> Report:
    args = rig.args
    rig.progress.label = "provisioning"
    cast = await provision(rig.target, args.spheres, args.connections, 0, args.users)
    rss_before = rig.probe.rss_mb()
    cpu0 = rig.probe.cpu_s()
    rig.progress.label = "connecting"
    started = time.perf_counter()
    opened = await rig.fleet.open(cast.seats)
    connect_s = time.perf_counter() - started
    rig.progress.label = "holding"
    await asyncio.sleep(args.seconds)  # a measurement pause: let the server settle
    rss_after = rig.probe.rss_mb()
    elapsed = time.perf_counter() - started
    window = await rig.fleet.collect({}, 0.0)
    figures: dict[str, Any] = {
        "connections": opened.connections,
        "published_per_s": 0.0,
        "delivered_per_s": 0.0,
        "latency_ms": opened.latency.summary_ms(),
        "latency_of": "connect, authenticate and subscribe, per connection",
        "lost": 0,
        "duplicated": window.duplicated,
        "reordered": window.reordered,
        "errors": opened.failures + window.errors,
        "disconnects": window.disconnects,
        "connect_s": round(connect_s, 2),
        "connections_per_s": round(opened.connections / connect_s, 1) if connect_s else 0.0,
    }
    if opened.first_failure:
        figures["first_failure"] = opened.first_failure
    if rig.has_server:
        delta = rss_after - rss_before
        figures |= {
            "server_rss_mb": round(rss_after, 1),
            "server_rss_before_mb": round(rss_before, 1),
            "server_rss_mb_per_1k": round(1000 * delta / opened.connections, 2)
            if opened.connections
            else 0.0,
            "server_cpu_pct": round(100 * (rig.probe.cpu_s() - cpu0) / elapsed, 1),
        }
    params = _params(args, "connections", "spheres", "users", "seconds", "encoding", "processes")
    ok = opened.failures == 0 and window.disconnects == 0
    return Report("idle", params, figures, ok=ok)
