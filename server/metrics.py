"""Prometheus metrics of one gateway process, served at ``GET /metrics``.

Counters are bumped once per event, never once per recipient (a fan-out to N connections is
one ``inc(N)``), so measuring costs nothing on the hot path. Gauges that mirror state are read
when Prometheus scrapes, from the objects that own the state.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Why: fan-out normally takes well under a millisecond; the tail up to seconds shows backlog.
FANOUT_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.writes = Counter(
            "cloison_writes", "Writes (publish, edit, delete) acknowledged", ["result"], registry=r
        )
        self.deliveries = Counter(
            "cloison_deliveries", "Stream events queued to connections", registry=r
        )
        self.fanout_latency = Histogram(
            "cloison_fanout_latency_seconds",
            "From the event's store timestamp to its fan-out on this node",
            buckets=FANOUT_BUCKETS_S,
            registry=r,
        )
        self.disconnects = Counter(
            "cloison_disconnects",
            "Connections closed by the server, by close code",
            ["code"],
            registry=r,
        )
        self.gap_repairs = Counter(
            "cloison_gap_repairs",
            "Events read from the store to fill a gap or catch up",
            registry=r,
        )
        self.gap_repairs_unneeded = Counter(
            "cloison_gap_repairs_unneeded",
            "Repaired events whose live copy arrived afterwards (late, not lost)",
            registry=r,
        )
        self.retention_deleted = Counter(
            "cloison_retention_deleted",
            "Events the retention job removed on this node",
            registry=r,
        )
        self.store_errors = Counter(
            "cloison_store_errors", "Requests that failed because the store failed", registry=r
        )

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A gauge read from ``read`` at each scrape."""
        Gauge(name, documentation, registry=self.registry).set_function(read)
