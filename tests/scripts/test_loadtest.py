"""The load generator's accounting, and the scripts run end to end against real processes.

The accounting tests feed frames to a subscriber directly; the others start the generator as
a subprocess (which spawns its own server or relay), so they check what a user runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from scripts.loadtest.accounting import Histogram, count_ranges, to_ranges
from scripts.loadtest.cli import parse_args
from scripts.loadtest.subscribers import Seat, Subscriber, SubscriberGroup
from scripts.loadtest.wire import Endpoint

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 60
FIGURES = (
    "delivered_per_s",
    "published_per_s",
    "latency_ms",
    "lost",
    "duplicated",
    "reordered",
    "connections",
    "errors",
    "server_cpu_pct",
    "server_rss_mb",
    "server_us_per_delivery",
)


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        cwd=ROOT,
        check=False,
    )


def loadtest_json(*args: str) -> dict[str, Any]:
    proc = run_script("scripts.loadtest", *args, "--json", "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def message(offset: int, body: str = "1|p0|0|x") -> dict[str, Any]:
    return {"type": "message", "sphere_id": "s1", "offset": offset, "body": body}


async def test_subscriber_counts_duplicates_reordering_and_loss() -> None:
    group = SubscriberGroup(Endpoint.of("http://127.0.0.1:9"), "json", (), 1)  # never opened
    sub = Subscriber(Seat("s1", "token", 0), group)
    sub.on_frame(message(9), 0)  # before ``subscribed``: a protocol violation
    sub.on_frame(
        {"type": "subscribed", "sphere_id": "s1", "position": {"offset": 10, "epoch": "e"}}, 0
    )
    for offset in (11, 12, 12, 14, 13, 16):
        sub.on_frame(message(offset), 10**6)
    acked = to_ranges([11, 12, 13, 14, 15, 16, 17])
    assert (group.delivered, group.duplicated, group.reordered, group.errors) == (5, 1, 1, 1)
    assert (sub.floor, sub.above) == (14, {16})
    assert sub.missing(acked, [first for first, _ in acked]) == 2  # 15 and 17
    assert group.latency.total == 5


def test_ranges_and_histogram() -> None:
    assert to_ranges([5, 3, 4, 9, 9, 1]) == [(1, 1), (3, 5), (9, 9)]
    assert count_ranges([(1, 1), (3, 5)]) == 4
    hist = Histogram()
    for ns in range(1, 100_001):
        hist.record(ns * 1000)  # 1 µs .. 100 ms, uniform
    summary = hist.summary_ms()
    assert summary["max"] == 100.0
    assert summary["p50"] == pytest.approx(50.0, rel=0.02)
    assert summary["p99"] == pytest.approx(99.0, rel=0.02)
    other = Histogram()
    other.record(10**9)
    hist.merge(other)
    assert hist.total == 100_001
    assert hist.summary_ms()["max"] == 1000.0


def test_options_are_bounded() -> None:
    with pytest.raises(SystemExit):
        parse_args(["idle", "--spawn", "--connections", "1000000"])
    with pytest.raises(SystemExit):
        parse_args(["history", "--spawn", "--relay"])
    args = parse_args(["--spawn"])
    assert (args.scenario, args.spheres, args.rate) == ("fanout", 1, [100.0])


@pytest.mark.e2e
@pytest.mark.slow
def test_fanout_against_a_spawned_server_loses_nothing() -> None:
    result = loadtest_json(
        "--spawn", "--spheres", "1", "--members", "5", "--rate", "50", "--seconds", "1"
    )
    assert set(FIGURES) <= set(result)
    assert set(result["latency_ms"]) == {"p50", "p95", "p99", "max"}
    assert (result["lost"], result["duplicated"], result["reordered"]) == (0, 0, 0)
    assert result["errors"] == 0
    assert result["acked"] == 50
    assert result["delivered"] == result["expected"] == 5 * result["acked"]
    assert result["connections"] == 6


@pytest.mark.e2e
@pytest.mark.slow
def test_the_relay_runs_under_the_generator() -> None:
    result = loadtest_json(
        "--spawn", "--relay", "--members", "5", "--rate", "50", "--seconds", "1",
        "--encoding", "msgpack",
    )  # fmt: skip
    assert (result["lost"], result["duplicated"], result["reordered"]) == (0, 0, 0)
    assert result["delivered"] == 5 * result["acked"] > 0
    assert result["server_us_per_delivery"] > 0


@pytest.mark.slow
def test_codec_bench_prints_figures() -> None:
    proc = run_script("scripts.bench_codec", "--quick", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    frames = {(row["frame"], row["encoding"]) for row in result["frames"]}
    assert ("message", "json") in frames
    assert ("message", "msgpack") in frames
    assert all(row["encode_us"] > 0 and row["decode_us"] > 0 for row in result["frames"])
    assert all(row["batch_us"] < row["encode_batch_us"] for row in result["batch_wrap"])
