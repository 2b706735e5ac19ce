"""What the suite runs: the full and quick plans, the targets of issue 5, the records of runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TARGETS = ("relay", "cloison")


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
