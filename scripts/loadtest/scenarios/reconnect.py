"""The ``reconnect`` scenario: every connection drops at once and resumes from its position."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from scripts.loadtest.accounting import count_ranges
from scripts.loadtest.publishers import Publishers
from scripts.loadtest.report import Report, server_figures
from scripts.loadtest.scenarios.rig import Rig, _params, connect_subscribers
from scripts.loadtest.subscribers import Storm
from scripts.loadtest.targets import provision


async def scenario_reconnect(rig: Rig) -> Report:
    args = rig.args
    rig.progress.label = "provisioning"
    cast = await provision(rig.target, args.spheres, args.connections, args.publishers, args.users)
    opened = await connect_subscribers(rig, cast.seats)
    publishers = Publishers(rig.endpoint, args.encoding)
    rig.progress.publishers = publishers
    try:
        await publishers.open(cast.writers, args.body_bytes)
        rate = args.rate[0]

        async def drop_later() -> Storm:
            await asyncio.sleep(args.drop_at_s)  # when, in the publishing phase, to drop
            rig.progress.label = "storm"
            storm = await rig.fleet.storm()
            rig.progress.label = "publishing"
            return storm

        cpu0 = rig.probe.cpu_s()
        started = time.perf_counter()
        rig.progress.label = "publishing"
        offer, storm = await asyncio.gather(publishers.phase(rate, args.seconds), drop_later())
        rig.progress.label = "draining"
        window = await rig.fleet.collect(offer.acked, args.drain_s)
        elapsed = time.perf_counter() - started
        connections = opened.connections + len(publishers.publishers)
    finally:
        await publishers.aclose()
    expected = sum(
        count_ranges(r) * rig.fleet.seats_per_sphere[sphere_id]
        for sphere_id, r in offer.acked.items()
    )
    all_live_s = (storm.last_live_ns - storm.started_ns) / 1e9 if storm.resumed else None
    figures: dict[str, Any] = {
        "connections": connections,
        "all_live_s": round(all_live_s, 3) if all_live_s is not None else None,
        "resumed": storm.resumed,
        "resume_failures": storm.failures,
        "resume_ms": storm.latency.summary_ms(),
        "published_per_s": round(offer.acked_count / offer.seconds, 1),
        "delivered_per_s": round(window.delivered / elapsed, 1),
        "latency_ms": window.latency.summary_ms(),
        "latency_of": "publish to delivery, replayed deliveries included",
        "acked": offer.acked_count,
        "delivered": window.delivered,
        "expected": expected,
        "lost": window.lost,
        "duplicated": window.duplicated,
        "reordered": window.reordered,
        "errors": window.errors + offer.errors + offer.unacked + storm.failures,
        "disconnects": window.disconnects,
    }
    if rig.has_server:
        figures |= server_figures(rig.probe.cpu_s() - cpu0, elapsed, window.delivered)
        figures["server_rss_mb"] = round(rig.probe.rss_mb(), 1)
    params = _params(
        args, "connections", "spheres", "publishers", "seconds", "drop_at_s", "encoding",
        "concurrency", "processes",
    )  # fmt: skip
    params["rate"] = rate
    ok = window.lost == window.duplicated == window.reordered == 0 and storm.failures == 0
    return Report("reconnect", params, figures, ok=ok)
