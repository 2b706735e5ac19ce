"""Phases and reports: the figures of a run, as a table or as JSON."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from scripts.loadtest.publishers import Offer
from scripts.loadtest.subscribers import Window


@dataclass(slots=True)
class Phase:
    """One publishing phase (a fixed rate, or a saturation step) and what it produced."""

    offer: Offer
    window: Window
    expected: int
    elapsed_s: float
    server_cpu_s: float
    server_rss_mb: float
    generator_cpu_s: float
    has_server: bool
    verdict: str = ""  # saturation: "pass" or why it failed

    @property
    def offered_ratio(self) -> float:
        asked = self.offer.rate * self.offer.seconds
        return self.offer.published / asked if asked else 0.0

    def figures(self, fanout: float) -> dict[str, Any]:
        """The phase's figures; ``fanout``: subscribers per sphere (deliveries per message)."""
        w, o = self.window, self.offer
        out: dict[str, Any] = {
            "rate": round(o.rate, 1),
            "offered_deliveries_per_s": round(o.rate * fanout, 1),
            "published_per_s": round(o.acked_count / o.seconds, 1) if o.seconds else 0.0,
            "delivered_per_s": round(w.delivered / self.elapsed_s, 1) if self.elapsed_s else 0.0,
            "latency_ms": w.latency.summary_ms(),
            "ack_latency_ms": o.ack_latency.summary_ms(),
            "published": o.published,
            "acked": o.acked_count,
            "delivered": w.delivered,
            "expected": self.expected,
            "lost": w.lost,
            "duplicated": w.duplicated,
            "reordered": w.reordered,
            "errors": w.errors + o.errors + o.unacked,
            "disconnects": w.disconnects,
            "offered_ratio": round(self.offered_ratio, 3),
            "elapsed_s": round(self.elapsed_s, 2),
            "generator_cpu_pct": round(100 * self.generator_cpu_s / self.elapsed_s, 1)
            if self.elapsed_s
            else 0.0,
        }
        if o.error_codes:
            out["error_codes"] = dict(o.error_codes)
        if w.close_codes:
            out["close_codes"] = {str(k): v for k, v in w.close_codes.items()}
        if self.has_server:
            out.update(server_figures(self.server_cpu_s, self.elapsed_s, w.delivered))
            out["server_rss_mb"] = round(self.server_rss_mb, 1)
        if self.verdict:
            out["verdict"] = self.verdict
        return out


def server_figures(cpu_s: float, elapsed_s: float, delivered: int) -> dict[str, float]:
    return {
        "server_cpu_pct": round(100 * cpu_s / elapsed_s, 1) if elapsed_s else 0.0,
        "server_us_per_delivery": round(1e6 * cpu_s / delivered, 2) if delivered else 0.0,
    }


def merge_phases(phases: Sequence[Phase]) -> Phase:
    """The whole run as one phase: counts added, histograms merged, time summed."""
    total = Phase(
        offer=Offer(rate=0.0, seconds=0.0),
        window=Window(),
        expected=0,
        elapsed_s=0.0,
        server_cpu_s=0.0,
        server_rss_mb=phases[-1].server_rss_mb if phases else 0.0,
        generator_cpu_s=0.0,
        has_server=bool(phases and phases[0].has_server),
    )
    for p in phases:
        o = total.offer
        o.seconds += p.offer.seconds
        o.rate += p.offer.rate * p.offer.seconds
        o.published += p.offer.published
        o.acked_count += p.offer.acked_count
        o.errors += p.offer.errors
        o.unacked += p.offer.unacked
        o.ack_latency.merge(p.offer.ack_latency)
        o.error_codes.update(p.offer.error_codes)
        total.window.merge(p.window)
        total.expected += p.expected
        total.elapsed_s += p.elapsed_s
        total.server_cpu_s += p.server_cpu_s
        total.generator_cpu_s += p.generator_cpu_s
    if total.offer.seconds:
        total.offer.rate /= total.offer.seconds  # the time-weighted mean rate
    return total


@dataclass(slots=True)
class Report:
    scenario: str
    params: dict[str, Any]
    figures: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)  # phases or steps
    ok: bool = True

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"scenario": {"name": self.scenario, **self.params}, **self.figures}
        if self.rows:
            out["steps" if self.scenario == "saturate" else "phases"] = self.rows
        return out

    def table(self) -> str:
        f = self.figures
        lines = [f"scenario                 {self.scenario}"]
        if "max_sustained_deliveries_per_s" in f:
            lines.append(
                f"max sustained            {f['max_sustained_deliveries_per_s']:,.0f} deliveries/s"
            )
        lines += [
            f"connections              {f['connections']:,}",
            f"published/s              {f['published_per_s']:,.0f}",
            f"delivered/s              {f['delivered_per_s']:,.0f}",
        ]
        lat = f["latency_ms"]
        lines.append(
            f"{'latency ms':<24} p50 {lat['p50']:.2f}  p95 {lat['p95']:.2f}"
            f"  p99 {lat['p99']:.2f}  max {lat['max']:.2f}  ({f.get('latency_of', '')})"
        )
        lines.append(f"lost/dup/reorder         {f['lost']} / {f['duplicated']} / {f['reordered']}")
        lines.append(f"errors                   {f['errors']}")
        shown = {
            "scenario", "connections", "published_per_s", "delivered_per_s", "latency_ms",
            "lost", "duplicated", "reordered", "errors", "max_sustained_deliveries_per_s",
            "latency_of",
        }  # fmt: skip
        for key, value in f.items():
            if key not in shown:
                lines.append(f"{key:<24} {value}")
        if len(self.rows) > 1 or self.scenario == "saturate":
            lines.append("")
            lines.append(
                f"{'msgs/s':>9} {'offered/s':>11} {'delivered/s':>11} {'p50 ms':>8} {'p99 ms':>8}"
                f" {'lost':>6} {'dup':>4} {'reord':>5} {'srv cpu%':>8} {'µs/deliv':>8}  verdict"
            )
            for row in self.rows:
                lat = row["latency_ms"]
                lines.append(
                    f"{row['rate']:>9,.0f} {row['offered_deliveries_per_s']:>11,.0f}"
                    f" {row['delivered_per_s']:>11,.0f} {lat['p50']:>8.2f} {lat['p99']:>8.2f}"
                    f" {row['lost']:>6} {row['duplicated']:>4} {row['reordered']:>5}"
                    f" {row.get('server_cpu_pct', 0):>8} {row.get('server_us_per_delivery', 0):>8}"
                    f"  {row.get('verdict', '')}"
                )
        return "\n".join(lines)
