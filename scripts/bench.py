"""The benchmark suite in one command: Cloison and the baseline relay, side by side.

    python -m scripts.bench [--quick] [--out docs/benchmarks.md] [--plots docs/bench]
                            [--server-cpu 0] [--generator-cpu 1] [--no-pin] [--stretch]
    python -m scripts.bench --render-only      # rewrite the report from docs/bench/results.json

Every figure comes from a fresh process started for it: ``scripts/loadtest.py --spawn``
(server pinned to one core with taskset, generator to another) against Cloison and against
``scripts/bench_relay.py``, the minimal relay on the websockets library's own server that marks
the practical limit of a Python relay. Runs, in order: fan-out at fixed offered rates,
saturation (x1.5 steps, then bisection), fan-out at half of each target's maximum, idle
connections, reconnect storms, SQLite durable ingest (``python -m storage.bench``, a
subprocess: scripts do not import storage) and the codec benchmark. Writes
``docs/benchmarks.md`` (machine, commands, each target of issue 5 with the measured figure and
the ratio to the relay in the same run), the raw results as ``results.json`` and two PNG plots
(delivered and p99 latency against offered load) into ``--plots``.

``--quick`` runs a scaled-down version in under two minutes: a smoke test of the suite whose
figures are not comparable with the targets. Every child run has a timeout, so the suite is
bounded in time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

TARGETS = ("relay", "cloison")
# Why: the two series often overlap at low load; distinct markers keep both visible.
STYLES: dict[str, dict[str, Any]] = {
    "relay": {"marker": "s", "linestyle": "--", "markersize": 7},
    "cloison": {"marker": "o", "linestyle": "-", "markersize": 5},
}
NONE = "\u2013"  # an en dash: no figure
TIMES = "\u00d7"
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Plan:
    """The size of every scenario; the defaults are the full suite (issue 5's topology)."""

    spheres: int = 10
    members: int = 50
    publishers: int = 10
    fixed_deliveries: tuple[float, ...] = (2_500, 10_000, 50_000, 100_000)  # offered per s
    fixed_s: float = 10.0
    drain_s: float = 5.0
    start_rate: float = 20.0  # msgs/s: 1,000 deliveries/s with 50 members
    step_s: float = 5.0
    bisections: int = 2
    max_steps: int = 30
    p99_ms: float = 50.0
    idle: tuple[int, ...] = (2_000, 10_000)
    idle_spheres: int = 100
    idle_hold_s: float = 5.0
    reconnect: tuple[int, ...] = (1_000, 5_000)
    reconnect_spheres: int = 100
    reconnect_rate: float = 100.0  # msgs/s published through the storm
    reconnect_s: float = 10.0
    reconnect_drop_at_s: float = 3.0
    reconnect_drain_s: float = 10.0
    ingest_s: float = 10.0
    ingest_messages: int = 400_000
    codec_quick: bool = False
    stretch_connections: int = 100_000


QUICK = Plan(
    spheres=2,
    members=25,
    publishers=2,
    fixed_deliveries=(2_500, 10_000),
    fixed_s=2.0,
    drain_s=2.0,
    start_rate=400.0,
    step_s=1.5,
    bisections=1,
    max_steps=6,
    idle=(300, 1_000),
    idle_spheres=20,
    idle_hold_s=1.0,
    reconnect=(200, 500),
    reconnect_spheres=20,
    reconnect_rate=50.0,
    reconnect_s=3.0,
    reconnect_drop_at_s=1.0,
    reconnect_drain_s=2.0,
    ingest_s=2.0,
    ingest_messages=20_000,
    codec_quick=True,
)

# Targets of issue 5, on a 2-core machine with the server on one core.
GOAL_DELIVERIES_PER_S = 100_000
GOAL_CPU_RATIO = 1.5
GOAL_HALF_LOAD_P99_MS = 10.0
GOAL_INGEST_PER_S = 20_000
GOAL_IDLE_MB_PER_1K = 20.0
GOAL_IDLE_CONNECTIONS = 10_000
GOAL_STORM_S = 10.0
GOAL_STORM_CLIENTS = 5_000
NODE_SOCKETIO_PER_S = 130_000  # peers-performance.md: Node socket.io + Redis adapter
STRETCH_FD_MARGIN = 1_000


@dataclass(slots=True)
class Run:
    """One child process of the suite and what it printed."""

    name: str
    target: str
    command: list[str]
    seconds: float = 0.0
    returncode: int | None = None
    result: dict[str, Any] | None = None
    error: str = ""


@dataclass(slots=True)
class Suite:
    quick: bool
    plan: Plan
    machine: dict[str, Any]
    pinned: bool
    started: str
    runs: list[Run] = field(default_factory=list)
    finished: str = ""
    stretch_note: str = ""

    def find(self, name: str, target: str = "cloison") -> Run | None:
        return next((r for r in self.runs if r.name == name and r.target == target), None)

    def result(self, name: str, target: str = "cloison") -> dict[str, Any] | None:
        run = self.find(name, target)
        return run.result if run else None


# ---------------------------------------------------------------------------------------------
# Running


def machine() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
                break
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
        "loadavg_start": _loadavg(),
    }


def _loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


class Runner:
    def __init__(self, suite: Suite, server_cpu: str, generator_cpu: str) -> None:
        self.suite = suite
        self.server_cpu = server_cpu
        self.generator_cpu = generator_cpu

    def loadtest(
        self, name: str, target: str, scenario: str, options: Sequence[str], timeout_s: float
    ) -> Run:
        command = [sys.executable, "-m", "scripts.loadtest", scenario, "--spawn", "--json"]
        command += ["--quiet"] + (["--relay"] if target == "relay" else [])
        if self.suite.pinned:
            command += ["--taskset-server", self.server_cpu]
            command += ["--taskset-generator", self.generator_cpu]
        return self.run(name, target, command + list(options), timeout_s, json_out=True)

    def pinned_to_server(self, command: list[str]) -> list[str]:
        return ["taskset", "-c", self.server_cpu, *command] if self.suite.pinned else command

    def run(
        self, name: str, target: str, command: list[str], timeout_s: float, json_out: bool
    ) -> Run:
        """Run one child with a timeout; keep its JSON (or text) output, or why it failed."""
        run = Run(name, target, command)
        index = len(self.suite.runs) + 1
        print(f"[{index:>2}] {target:<7} {name} ...", end="", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            proc = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout_s, cwd=ROOT
            )
        except subprocess.TimeoutExpired:
            run.error = f"timed out after {timeout_s:.0f} s"
        else:
            run.returncode = proc.returncode
            lines = proc.stdout.strip().splitlines()
            if json_out and lines and lines[-1].startswith("{"):
                run.result = json.loads(lines[-1])
            elif not json_out and proc.returncode == 0:
                run.result = {"text": proc.stdout}
            if run.result is None:
                run.error = (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
        run.seconds = time.perf_counter() - started
        status = "ok" if run.result is not None else f"FAILED: {run.error}"
        print(f" {run.seconds:.1f} s {status}", file=sys.stderr, flush=True)
        self.suite.runs.append(run)
        return run


def fanout_options(plan: Plan) -> list[str]:
    return [
        *("--spheres", str(plan.spheres), "--members", str(plan.members)),
        *("--publishers", str(plan.publishers), "--drain-s", str(plan.drain_s)),
    ]


def run_suite(runner: Runner, plan: Plan, stretch: bool) -> None:
    fan = fanout_options(plan)
    rates: list[str] = []
    for deliveries in plan.fixed_deliveries:
        rates += ["--rate", f"{deliveries / plan.members:g}"]
    fixed_budget = len(plan.fixed_deliveries) * (plan.fixed_s + plan.drain_s + 15) + 120
    step_budget = (plan.max_steps + plan.bisections) * (plan.step_s + plan.drain_s + 15) + 120
    for target in TARGETS:
        runner.loadtest(
            "fixed", target, "fanout", [*fan, *rates, "--seconds", str(plan.fixed_s)], fixed_budget
        )
    for target in TARGETS:
        options = [*fan, "--start-rate", str(plan.start_rate), "--step-s", str(plan.step_s)]
        options += ["--bisections", str(plan.bisections), "--max-steps", str(plan.max_steps)]
        options += ["--p99-ms", str(plan.p99_ms)]
        runner.loadtest("saturate", target, "saturate", options, step_budget)
    for target in TARGETS:
        saturated = runner.suite.result("saturate", target)
        best = saturated.get("max_sustained_rate") if saturated else None
        if best:
            options = [*fan, "--rate", f"{best / 2:.1f}", "--seconds", str(plan.fixed_s)]
            runner.loadtest("half", target, "fanout", options, plan.fixed_s + plan.drain_s + 120)
    for connections in plan.idle:
        for target in TARGETS:
            options = ["--connections", str(connections), "--spheres", str(plan.idle_spheres)]
            options += ["--seconds", str(plan.idle_hold_s)]
            runner.loadtest(f"idle {connections}", target, "idle", options, 600)
    for connections in plan.reconnect:
        for target in TARGETS:
            options = ["--connections", str(connections), "--spheres", str(plan.reconnect_spheres)]
            options += ["--rate", str(plan.reconnect_rate), "--seconds", str(plan.reconnect_s)]
            options += ["--drop-at-s", str(plan.reconnect_drop_at_s)]
            options += ["--drain-s", str(plan.reconnect_drain_s)]
            runner.loadtest(f"reconnect {connections}", target, "reconnect", options, 900)
    # Each of the server and the two generator processes holds its share of the sockets.
    fds_needed = plan.stretch_connections + STRETCH_FD_MARGIN
    if stretch and runner.suite.machine["fd_limit"] < fds_needed:
        runner.suite.stretch_note = (
            f"not run: needs an open-files limit of {fds_needed:,} for the server "
            f"(hard limit here {runner.suite.machine['fd_limit']:,})"
        )
    elif stretch:
        options = ["--connections", str(plan.stretch_connections), "--spheres", "1000"]
        options += ["--seconds", str(plan.idle_hold_s), "--processes", "2"]
        options += ["--concurrency", "1000", "--max-run-s", "1200"]
        runner.loadtest("stretch idle", "cloison", "idle", options, 1500)
    ingest = [sys.executable, "-m", "storage.bench", "--seconds", str(plan.ingest_s)]
    ingest += ["--messages", str(plan.ingest_messages)]
    runner.run("ingest", "cloison", runner.pinned_to_server(ingest), plan.ingest_s + 120, False)
    codec = [sys.executable, "-m", "scripts.bench_codec", "--json"]
    codec += ["--quick"] if plan.codec_quick else []
    runner.run("codec", "cloison", runner.pinned_to_server(codec), 300, True)


# ---------------------------------------------------------------------------------------------
# Reporting


def _n(value: Any, digits: int = 0) -> str:
    if value is None:
        return NONE
    if isinstance(value, int | float):
        return f"{value:,.{digits}f}"
    return str(value)


def _ratio(a: Any, b: Any) -> str:
    if not isinstance(a, int | float) or not isinstance(b, int | float) or not b:
        return NONE
    return f"{a / b:.2f}{TIMES}"


def _met(ok: bool | None) -> str:
    return NONE if ok is None else ("yes" if ok else "**no**")


def _command(run: Run) -> str:
    parts = [Path(p).name if p == sys.executable else p for p in run.command]
    return shlex.join(parts)


def ingest_figures(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if found := re.search(r"throughput\s+([\d,]+) messages/s", text):
        out["messages_per_s"] = int(found.group(1).replace(",", ""))
    if found := re.search(r"batch size\s+([\d.]+)", text):
        out["appends_per_commit"] = float(found.group(1))
    if found := re.search(r"p50 ([\d.]+) ms, p99 ([\d.]+) ms", text):
        out["p50_ms"], out["p99_ms"] = float(found.group(1)), float(found.group(2))
    out["check_ok"] = "check       ok" in text
    return out


def points(suite: Suite, target: str) -> list[tuple[float, float, float]]:
    """(offered, delivered, p99 ms) of every fixed-rate phase and saturation step."""
    rows: list[dict[str, Any]] = []
    for name, key in (("fixed", "phases"), ("saturate", "steps")):
        result = suite.result(name, target)
        if result:
            rows += result.get(key, [])
    return sorted(
        (r["offered_deliveries_per_s"], r["delivered_per_s"], r["latency_ms"]["p99"]) for r in rows
    )


def plot(suite: Suite, plots: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots.mkdir(parents=True, exist_ok=True)
    made = []
    series = {target: points(suite, target) for target in TARGETS}
    labels = {"relay": "baseline relay (websockets broadcast)", "cloison": "Cloison"}
    title = " (quick run)" if suite.quick else ""

    fig, ax = plt.subplots(figsize=(7, 4.5))
    top = max((p[0] for s in series.values() for p in s), default=1.0)
    ax.plot([0, top], [0, top], linestyle=":", color="grey", label="delivered = offered")
    for target, data in series.items():
        if data:
            x, y = [p[0] for p in data], [p[1] for p in data]
            ax.plot(x, y, label=labels[target], **STYLES[target])
    ax.set_xlabel("offered deliveries/s")
    ax.set_ylabel("delivered deliveries/s")
    ax.set_title(f"Fan-out throughput{title}")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    made.append(plots / "throughput.png")
    fig.savefig(made[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for target, data in series.items():
        if data:
            p99 = [max(p[2], 0.01) for p in data]
            ax.plot([p[0] for p in data], p99, label=labels[target], **STYLES[target])
    ax.axhline(suite.plan.p99_ms, linestyle="--", color="red", label=f"{suite.plan.p99_ms:g} ms")
    ax.set_yscale("log")
    ax.set_xlabel("offered deliveries/s")
    ax.set_ylabel("p99 publish→deliver latency, ms")
    ax.set_title(f"Fan-out p99 latency{title}")
    ax.grid(True, alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    made.append(plots / "latency.png")
    fig.savefig(made[-1], dpi=110)
    plt.close(fig)
    return made


def targets_table(suite: Suite) -> list[str]:
    sat = {t: suite.result("saturate", t) or {} for t in TARGETS}
    half = {t: suite.result("half", t) or {} for t in TARGETS}
    idle_n = max(suite.plan.idle)
    idle = {t: suite.result(f"idle {idle_n}", t) or {} for t in TARGETS}
    storm_n = max(suite.plan.reconnect)
    storm = {t: suite.result(f"reconnect {storm_n}", t) or {} for t in TARGETS}
    ingest_run = suite.result("ingest")
    ingest = ingest_figures(ingest_run["text"]) if ingest_run else {}

    c_max = sat["cloison"].get("max_sustained_deliveries_per_s")
    r_max = sat["relay"].get("max_sustained_deliveries_per_s")
    c_us = sat["cloison"].get("server_us_per_delivery")
    r_us = sat["relay"].get("server_us_per_delivery")
    clean = all(sat["cloison"].get(k) == 0 for k in ("lost", "duplicated", "reordered"))
    c_half = half["cloison"].get("latency_ms", {}).get("p99")
    r_half = half["relay"].get("latency_ms", {}).get("p99")
    c_mb = idle["cloison"].get("server_rss_mb_per_1k")
    r_mb = idle["relay"].get("server_rss_mb_per_1k")
    c_conns = idle["cloison"].get("connections")
    c_live = storm["cloison"].get("all_live_s")
    c_lost = storm["cloison"].get("lost")
    r_live = storm["relay"].get("all_live_s")
    r_lost = storm["relay"].get("lost")
    ingest_rate = ingest.get("messages_per_s")
    stretch = suite.result("stretch idle")

    def ok(condition: bool, *values: Any) -> bool | None:
        return None if any(v is None for v in values) else condition

    rows = [
        (
            "Fan-out deliveries/s at p99 ≤ 50 ms, 0 lost / dup / reordered",
            f"≥ {GOAL_DELIVERIES_PER_S:,}",
            f"{_n(c_max)}{'' if clean or c_max is None else ' (with loss)'}",
            _n(r_max),
            _ratio(c_max, r_max),
            _met(ok(bool(c_max and c_max >= GOAL_DELIVERIES_PER_S and clean), c_max)),
        ),
        (
            "Server CPU per delivery at saturation",
            f"≤ {GOAL_CPU_RATIO}{TIMES} the relay's",
            f"{_n(c_us, 2)} µs",
            f"{_n(r_us, 2)} µs",
            _ratio(c_us, r_us),
            _met(ok(bool(c_us and r_us and c_us / r_us <= GOAL_CPU_RATIO), c_us, r_us)),
        ),
        (
            "p99 publish → deliver at half the max sustained rate (durable append included)",
            f"≤ {GOAL_HALF_LOAD_P99_MS:g} ms",
            f"{_n(c_half, 2)} ms",
            f"{_n(r_half, 2)} ms",
            _ratio(c_half, r_half),
            _met(ok(bool(c_half is not None and c_half <= GOAL_HALF_LOAD_P99_MS), c_half)),
        ),
        (
            "Durable ingest on SQLite, group commit, ack after commit",
            f"≥ {GOAL_INGEST_PER_S:,} msgs/s",
            f"{_n(ingest_rate)} msgs/s",
            f"{NONE} (stores nothing)",
            NONE,
            _met(ok(bool(ingest_rate and ingest_rate >= GOAL_INGEST_PER_S), ingest_rate)),
        ),
        (
            f"Idle authenticated connections: RSS per 1,000 (at {idle_n:,})",
            f"≤ {GOAL_IDLE_MB_PER_1K:g} MB at {GOAL_IDLE_CONNECTIONS:,}",
            f"{_n(c_mb, 1)} MB ({_n(c_conns)} connected)",
            f"{_n(r_mb, 1)} MB",
            _ratio(c_mb, r_mb),
            _met(
                ok(
                    bool(
                        c_mb is not None
                        and c_mb <= GOAL_IDLE_MB_PER_1K
                        and c_conns == idle_n
                        and idle_n >= GOAL_IDLE_CONNECTIONS
                    ),
                    c_mb,
                )
            ),
        ),
        (
            f"Reconnect storm: {storm_n:,} clients resume, nothing lost",
            f"{GOAL_STORM_CLIENTS:,} within {GOAL_STORM_S:g} s, 0 lost",
            f"{_n(c_live, 2)} s, {_n(c_lost)} lost",
            f"{_n(r_live, 2)} s, {_n(r_lost)} lost (no replay)",
            _ratio(c_live, r_live),
            _met(
                ok(
                    bool(
                        c_live is not None
                        and c_live <= GOAL_STORM_S
                        and c_lost == 0
                        and storm_n >= GOAL_STORM_CLIENTS
                    ),
                    c_live,
                )
            ),
        ),
        (
            "Stretch: beat Node socket.io, match the relay's deliveries/s",
            f"> {NODE_SOCKETIO_PER_S:,} and ≥ 1.00{TIMES} relay",
            _n(c_max),
            _n(r_max),
            _ratio(c_max, r_max),
            _met(
                ok(
                    bool(c_max and r_max and c_max > NODE_SOCKETIO_PER_S and c_max >= r_max),
                    c_max,
                    r_max,
                )
            ),
        ),
        (
            "Stretch: 100,000 concurrent connections on this machine",
            "100,000 connected",
            _n(stretch.get("connections"))
            if stretch
            else suite.stretch_note or "not run (`--stretch`)",
            NONE,
            NONE,
            _met(
                ok(bool(stretch and stretch.get("connections") == 100_000), stretch)
                if stretch
                else None
            ),
        ),
    ]
    if suite.quick:  # scaled down: a verdict against the full-size goals would mislead
        rows = [(*row[:5], "n/a (quick)") for row in rows]
    lines = [
        "| Target | Goal | Cloison | Relay (same run) | Cloison ÷ relay | Met |",
        "|---|---|---:|---:|---:|---|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def phase_table(rows: list[dict[str, Any]], with_verdict: bool) -> list[str]:
    head = "| offered deliveries/s | delivered/s | p50 ms | p99 ms | max ms | lost / dup / reord"
    head += " | server CPU % | µs / delivery | generator CPU % |"
    sep = "|---:|---:|---:|---:|---:|---|---:|---:|---:|"
    if with_verdict:
        head += " verdict |"
        sep += "---|"
    lines = [head, sep]
    for r in rows:
        lat = r["latency_ms"]
        cells = [
            _n(r["offered_deliveries_per_s"]),
            _n(r["delivered_per_s"]),
            _n(lat["p50"], 2),
            _n(lat["p99"], 2),
            _n(lat["max"], 2),
            f"{r['lost']} / {r['duplicated']} / {r['reordered']}",
            _n(r.get("server_cpu_pct"), 1),
            _n(r.get("server_us_per_delivery"), 2),
            _n(r.get("generator_cpu_pct"), 1),
        ]
        if with_verdict:
            cells.append(str(r.get("verdict", "")))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render(suite: Suite, plots: list[Path], out: Path) -> str:
    plan, m = suite.plan, suite.machine
    rel = [os.path.relpath(p, out.parent) for p in plots]
    lines = ["# Benchmarks", ""]
    if suite.quick:
        lines += [
            "> **Quick run** (`--quick`): a scaled-down smoke test of the suite. Its figures are",
            "> not comparable with the targets; run `python -m scripts.bench` on an otherwise",
            "> idle machine for the real ones.",
            "",
        ]
    lines += [
        f"Generated by `python -m scripts.bench{' --quick' if suite.quick else ''}` on "
        f"{suite.started} (finished {suite.finished}). Every figure below comes from a fresh "
        "server process started for it; the baseline relay "
        "(`scripts/bench_relay.py`: the websockets library's own asyncio server, `broadcast()`, "
        "encode once, no storage, no ordering across processes, no authorization) ran on the "
        "same core with the same generator in the same run, so the ratio column is the fair "
        "comparison, not the absolute numbers.",
        "",
        "## Machine",
        "",
        f"- CPUs: {m['nproc']} {TIMES} {m['cpu_model'] or 'unknown'}",
        f"- Memory: {m['memory_gb']} GB; kernel {m['kernel']}; Python {m['python']}",
        f"- Open-files hard limit: {m['fd_limit']:,}",
        f"- Load average before / after: {m['loadavg_start']} / {m.get('loadavg_end', '?')}",
        "- Pinning: "
        + (
            f"server on CPU {m.get('server_cpu')}, generator on CPU {m.get('generator_cpu')} "
            "(taskset / sched_setaffinity)"
            if suite.pinned
            else "none (fewer than 2 CPUs or no taskset)"
        ),
        "",
        "## Targets (issue 5)",
        "",
        *targets_table(suite),
        "",
        "Ratios are Cloison ÷ relay: for deliveries/s higher is better, for CPU, latency,",
        "memory and time lower is better. The relay keeps no history, so its storm loses what",
        "was published while clients were away; Cloison replays it from the store.",
        "",
        "## Fan-out at fixed offered rates",
        "",
        f"{plan.spheres} spheres {TIMES} {plan.members} subscribers, {plan.publishers} publishers, "
        f"128-byte bodies, {plan.fixed_s:g} s per rate then up to {plan.drain_s:g} s of drain. "
        "Latency is publish-send to delivery; lost counts acknowledged messages a subscriber "
        "never received.",
        "",
    ]
    for target in TARGETS:
        result = suite.result("fixed", target)
        lines += [f"**{target}**", ""]
        lines += phase_table(result["phases"], False) if result else ["(failed)"]
        lines.append("")
    lines += [
        "## Saturation",
        "",
        f"From {plan.start_rate:g} msgs/s, {TIMES}1.5 per {plan.step_s:g} s step until a step "
        f"fails (p99 > {plan.p99_ms:g} ms, deliveries missing after the drain, errors, or the "
        f"generator offering < 95 % of the rate), then {plan.bisections} bisection(s). The "
        "maximum is what the best passing step delivered; µs per delivery is the server's CPU "
        "time at that step divided by its deliveries.",
        "",
    ]
    for target in TARGETS:
        result = suite.result("saturate", target)
        if not result:
            lines += [f"**{target}**: failed", ""]
            continue
        lines += [
            f"**{target}**: max sustained {_n(result.get('max_sustained_deliveries_per_s'))} "
            f"deliveries/s at {_n(result.get('server_us_per_delivery'), 2)} µs per delivery "
            f"({_n(result.get('server_cpu_pct'), 1)} % server CPU)"
            + ("" if result.get("ceiling_reached") else "; no step failed (raise --max-steps)")
            + (
                "; **the failing step was generator-bound**, so this maximum is a lower bound"
                if result.get("generator_bound")
                else ""
            ),
            "",
            *phase_table(result["steps"], True),
            "",
        ]
    lines += ["## Latency at half the maximum", ""]
    for target in TARGETS:
        result = suite.result("half", target)
        if result:
            lat = result["latency_ms"]
            lines.append(
                f"- {target}: {_n(result['offered_deliveries_per_s'])} deliveries/s offered, "
                f"p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms, max {lat['max']:.2f} ms, "
                f"lost {result['lost']}"
            )
    lines += [
        "",
        "## Idle connections",
        "",
        f"Each connection authenticates and subscribes to one of {plan.idle_spheres} spheres; "
        "RSS growth of the server process divided by the connections.",
        "",
        "| connections | target | connected | RSS MB after | MB per 1,000 | connect s | errors |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for n in plan.idle:
        for target in TARGETS:
            r = suite.result(f"idle {n}", target) or {}
            lines.append(
                f"| {n:,} | {target} | {_n(r.get('connections'))} | "
                f"{_n(r.get('server_rss_mb'), 1)} | {_n(r.get('server_rss_mb_per_1k'), 2)} | "
                f"{_n(r.get('connect_s'), 2)} | {_n(r.get('errors'))} |"
            )
    lines += [
        "",
        "## Reconnect storm",
        "",
        f"Clients over {plan.reconnect_spheres} spheres; publishers offer "
        f"{plan.reconnect_rate:g} msgs/s for {plan.reconnect_s:g} s and every connection is "
        f"reset at {plan.reconnect_drop_at_s:g} s, then reconnects and resubscribes with "
        '`since` (200 handshakes in flight). "All live" is the time from the reset to the '
        "last `subscribed`.",
        "",
        "| clients | target | all live s | resume p50 / p99 ms | lost | dup | reord | errors |",
        "|---:|---|---:|---|---:|---:|---:|---:|",
    ]
    for n in plan.reconnect:
        for target in TARGETS:
            r = suite.result(f"reconnect {n}", target) or {}
            resume = r.get("resume_ms", {})
            lines.append(
                f"| {n:,} | {target} | {_n(r.get('all_live_s'), 2)} | "
                f"{_n(resume.get('p50'), 1)} / {_n(resume.get('p99'), 1)} | "
                f"{_n(r.get('lost'))} | {_n(r.get('duplicated'))} | {_n(r.get('reordered'))} | "
                f"{_n(r.get('errors'))} |"
            )
    ingest_run = suite.result("ingest")
    lines += ["", "## Durable ingest (SQLite)", ""]
    if ingest_run:
        lines += ["```text", ingest_run["text"].strip(), "```"]
    else:
        lines.append("(failed)")
    codec = suite.result("codec")
    lines += ["", "## Codec", ""]
    if codec:
        lines += [
            "Microseconds per frame; decode validates into frame classes, parse is the bare "
            "`orjson`/`msgpack` call under it.",
            "",
            "| frame | encoding | bytes | encode µs | decode µs | parse µs |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for r in codec["frames"]:
            lines.append(
                f"| {r['frame']} | {r['encoding']} | {r['bytes']:,} | {r['encode_us']:.2f} | "
                f"{r['decode_us']:.2f} | {r['parse_us']:.2f} |"
            )
        lines += [
            "",
            "| wrap 32 encoded messages | byte-level `batch()` µs | encode a `Batch` frame µs |",
            "|---|---:|---:|",
        ]
        for r in codec["batch_wrap"]:
            lines.append(f"| {r['encoding']} | {r['batch_us']:.2f} | {r['encode_batch_us']:.2f} |")
    lines += ["", "## Plots", ""]
    lines += [f"![{Path(p).stem}]({p})" for p in rel]
    lines += [
        "",
        "## Commands",
        "",
        "Run from the repository root with the project's virtualenv (`python` is its "
        "interpreter). `cloison loadtest` takes the same options as `python -m scripts.loadtest`.",
        "",
        "```sh",
        *(_command(run) for run in suite.runs),
        "```",
        "",
        "## Reading these figures",
        "",
        "- On two cores the generator costs about as much per delivery as the server; judge "
        "the server by its CPU per delivery and by the ratio to the relay, not only by the "
        "total rate. The generator's own CPU is in the tables.",
        "- Server CPU comes from `/proc/<pid>/stat` and leaves out kernel loopback work no "
        "process is charged for.",
        "- Near saturation the p99 of a short step flips on one scheduler or GC pause; expect "
        "±10 to 15 % between runs of the maximum.",
        "",
    ]
    failed = [r for r in suite.runs if r.result is None]
    if failed:
        lines += ["## Runs that failed", ""]
        lines += [f"- {r.target} {r.name}: {r.error}" for r in failed]
        lines.append("")
    return "\n".join(lines)


def write_report(suite: Suite, out: Path, plots_dir: Path) -> None:
    plots = plot(suite, plots_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(suite, plots, out))
    data = asdict(suite)
    (plots_dir / "results.json").write_text(json.dumps(data, indent=1) + "\n")


def load_suite(path: Path) -> Suite:
    data = json.loads(path.read_text())
    plan_data = data.pop("plan")
    for key in ("fixed_deliveries", "idle", "reconnect"):
        plan_data[key] = tuple(plan_data[key])
    runs = [Run(**run) for run in data.pop("runs")]
    return Suite(plan=Plan(**plan_data), runs=runs, **data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="scaled-down smoke run (< 2 min)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--plots", type=Path, default=ROOT / "docs" / "bench")
    parser.add_argument("--server-cpu", default="0")
    parser.add_argument("--generator-cpu", default="1")
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    parser.add_argument("--stretch", action="store_true", help="also try 100,000 idle connections")
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite the report from results.json"
    )
    args = parser.parse_args(argv)
    if args.render_only:
        write_report(load_suite(args.plots / "results.json"), args.out, args.plots)
        return 0
    info = machine()
    pinned = not args.no_pin and info["nproc"] >= 2 and shutil.which("taskset") is not None
    if pinned:
        info |= {"server_cpu": args.server_cpu, "generator_cpu": args.generator_cpu}
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    suite = Suite(args.quick, QUICK if args.quick else Plan(), info, pinned, now)
    run_suite(Runner(suite, args.server_cpu, args.generator_cpu), suite.plan, args.stretch)
    suite.machine["loadavg_end"] = _loadavg()
    suite.finished = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    write_report(suite, args.out, args.plots)
    failed = [r for r in suite.runs if r.result is None]
    print(f"wrote {args.out} and {args.plots}/; {len(failed)} run(s) failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
