"""The ``history`` scenario: publish M messages into one sphere, then page back through them."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from protocol import History, SphereId
from scripts.loadtest.accounting import Histogram
from scripts.loadtest.limits import MAX_SECONDS
from scripts.loadtest.publishers import Publishers
from scripts.loadtest.report import Report
from scripts.loadtest.scenarios.rig import Rig, _params
from scripts.loadtest.targets import provision
from scripts.loadtest.wire import WireConnection, close_all, login


async def scenario_history(rig: Rig) -> Report:
    args = rig.args
    rig.progress.label = "provisioning"
    cast = await provision(rig.target, 1, args.readers, 1, args.readers)
    sphere_id = SphereId(cast.sphere_ids[0])
    publishers = Publishers(rig.endpoint, args.encoding)
    rig.progress.publishers = publishers
    rig.progress.label = f"writing {args.messages:,} messages"
    try:
        await publishers.open(cast.writers, args.body_bytes)
        offer = await publishers.phase(args.write_rate, MAX_SECONDS, total=args.messages)
    finally:
        await publishers.aclose()
    acked = offer.acked.get(sphere_id, [])
    top = acked[-1][1] if acked else 0
    readers = [(await login(rig.endpoint, args.encoding, seat.token))[0] for seat in cast.seats]
    latency = Histogram()
    counts = Counter[str]()
    rig.progress.label = "paging"
    cpu0 = rig.probe.cpu_s()
    started = time.perf_counter()
    deadline = started + args.seconds

    async def read_all(conn: WireConnection) -> None:
        seen = bytearray(top + 1)
        before: int | None = None
        low = top + 1
        for _ in range(top // args.page_size + 2):  # bounded: one pass through the sphere
            if time.perf_counter() >= deadline:
                counts["timed_out"] += 1
                break
            sent = time.perf_counter_ns()
            reply = await conn.request(
                History(sphere_id=sphere_id, before=before, limit=args.page_size)
            )
            latency.record(reply.arrived_ns - sent)
            page = reply.frame
            if page.get("type") != "history_page":
                counts["errors"] += 1
                break
            counts["pages"] += 1
            offsets = [m["offset"] for m in page["messages"]]
            if offsets != sorted(offsets) or (offsets and offsets[-1] >= low):
                counts["reordered"] += 1
            for offset in offsets:
                if 0 < offset <= top and not seen[offset]:
                    seen[offset] = 1
                    counts["read"] += 1
                else:
                    counts["duplicated"] += 1
            if not offsets or not page["has_more"]:
                break
            low = min(low, offsets[0])
            before = offsets[0]
        counts["lost"] += sum(seen[first : last + 1].count(0) for first, last in acked)

    try:
        async with asyncio.TaskGroup() as group:
            for conn in readers:
                group.create_task(read_all(conn))
    finally:
        await close_all(readers)
    elapsed = time.perf_counter() - started
    figures: dict[str, Any] = {
        "connections": len(readers),
        "messages": offer.acked_count,
        "pages": counts["pages"],
        "pages_per_s": round(counts["pages"] / elapsed, 1),
        "published_per_s": round(offer.acked_count / offer.elapsed_s, 1),
        "delivered_per_s": round(counts["read"] / elapsed, 1),
        "latency_ms": latency.summary_ms(),
        "latency_of": "history request to page, per page",
        "lost": counts["lost"],
        "duplicated": counts["duplicated"],
        "reordered": counts["reordered"],
        "errors": counts["errors"] + counts["timed_out"] + offer.errors + offer.unacked,
    }
    if rig.has_server:
        figures |= {
            "server_cpu_pct": round(100 * (rig.probe.cpu_s() - cpu0) / elapsed, 1),
            "server_rss_mb": round(rig.probe.rss_mb(), 1),
        }
    params = _params(args, "messages", "page_size", "readers", "body_bytes", "encoding")
    ok = counts["lost"] == counts["duplicated"] == counts["reordered"] == counts["errors"] == 0
    return Report("history", params, figures, ok=ok)
