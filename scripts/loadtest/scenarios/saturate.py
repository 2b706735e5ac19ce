"""The ``saturate`` scenario: step the offered rate up until a step fails, then bisect."""

from __future__ import annotations

import argparse
import os

from scripts.loadtest.limits import GENERATOR_BOUND, GENERATOR_BUSY, MAX_RATE_PER_S, OFFER_RATIO_MIN
from scripts.loadtest.report import Phase, Report
from scripts.loadtest.scenarios.rig import Rig, _params, fanout_topology, run_phase


def judge(phase: Phase, p99_ms: float, generator_cores: int) -> str:
    """Why a saturation step failed, or "pass". A failure while the generator's own CPU was
    nearly full is marked: that step measured the generator as much as the server."""
    w = phase.window
    if phase.offered_ratio < OFFER_RATIO_MIN:
        why = f"offered only {phase.offered_ratio:.0%} of the rate"
    elif w.lost:
        why = f"{w.lost} deliveries missing after the drain"
    elif w.duplicated or w.reordered:
        why = "duplicated or reordered deliveries"
    elif phase.offer.errors or phase.offer.unacked or w.errors:
        why = "request errors"
    elif (p99 := w.latency.percentile_ns(0.99) / 1e6) > p99_ms:
        why = f"p99 {p99:.1f} ms > {p99_ms:g} ms"
    else:
        return "pass"
    busy = phase.generator_cpu_s / phase.elapsed_s / generator_cores if phase.elapsed_s else 0.0
    if busy >= GENERATOR_BUSY:
        why += f" ({GENERATOR_BOUND}: {busy:.0%} of its CPU)"
    return why


def generator_cores(args: argparse.Namespace) -> int:
    """How many cores the generator's processes can use at most."""
    pinned: list[int] | None = args.taskset_generator
    available = len(set(pinned)) if pinned else os.cpu_count() or 1
    processes: int = args.processes
    return max(1, min(processes, available))


async def scenario_saturate(rig: Rig) -> Report:
    args = rig.args
    subscribers = args.members  # deliveries per message
    steps: list[Phase] = []

    async def step(rate: float) -> Phase:
        rig.progress.label = f"step {len(steps) + 1} {rate:,.0f} msg/s"
        phase = await run_phase(rig, publishers, rate, args.step_s)
        phase.verdict = judge(phase, args.p99_ms, generator_cores(args))
        steps.append(phase)
        rig.progress.say(
            f"step {len(steps):>2}: {rate:>9,.1f} msg/s  "
            f"{phase.window.delivered / phase.elapsed_s:>11,.0f} deliveries/s  {phase.verdict}"
        )
        return phase

    async with fanout_topology(rig) as (publishers, opened):
        best: Phase | None = None
        failed: Phase | None = None
        rate = args.start_rate
        while len(steps) < args.max_steps and rate <= MAX_RATE_PER_S:
            phase = await step(rate)
            if phase.verdict != "pass":
                failed = phase
                break
            best = phase
            rate *= args.factor
        for _ in range(args.bisections):
            if best is None or failed is None or len(steps) >= args.max_steps:
                break
            phase = await step((best.offer.rate + failed.offer.rate) / 2)
            if phase.verdict == "pass":
                best = phase
            else:
                failed = phase
        connections = opened.connections + len(publishers.publishers)
    chosen = best or steps[0]
    figures = chosen.figures(subscribers)
    figures = {
        "connections": connections,
        "max_sustained_deliveries_per_s": figures["delivered_per_s"] if best else 0.0,
        "max_sustained_rate": round(best.offer.rate, 1) if best else 0.0,
        "lowest_failing_rate": round(failed.offer.rate, 1) if failed else None,
        "ceiling_reached": failed is not None,
        "generator_bound": failed is not None and GENERATOR_BOUND in failed.verdict,
        "latency_of": "publish to delivery, at the best passing step",
        **figures,
    }
    params = _params(
        args, "spheres", "members", "publishers", "start_rate", "factor", "step_s",
        "bisections", "p99_ms", "body_bytes", "encoding", "drain_s", "processes",
    )  # fmt: skip
    bad = sum(p.window.duplicated + p.window.reordered for p in steps)
    return Report("saturate", params, figures, [p.figures(subscribers) for p in steps], bad == 0)
