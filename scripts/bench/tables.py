"""The report's figures as text: numbers, ratios, verdicts, the targets table, phase tables."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path
from typing import Any

from scripts.bench.plan import (
    GOAL_CPU_RATIO,
    GOAL_DELIVERIES_PER_S,
    GOAL_HALF_LOAD_P99_MS,
    GOAL_IDLE_CONNECTIONS,
    GOAL_IDLE_MB_PER_1K,
    GOAL_INGEST_PER_S,
    GOAL_STORM_CLIENTS,
    GOAL_STORM_S,
    NODE_SOCKETIO_PER_S,
    TARGETS,
    Run,
    Suite,
)

NONE = "\u2013"  # an en dash: no figure
TIMES = "\u00d7"


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
