"""Running the suite: the machine it runs on, then each child run in order, under a timeout."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scripts.bench.plan import STRETCH_FD_MARGIN, TARGETS, Plan, Run, Suite

ROOT = Path(__file__).resolve().parents[2]


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
