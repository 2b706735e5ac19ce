"""The two PNG plots: delivered rate and p99 latency against the offered load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scripts.bench.plan import TARGETS, Suite

# Why: the two series often overlap at low load; distinct markers keep both visible.
STYLES: dict[str, dict[str, Any]] = {
    "relay": {"marker": "s", "linestyle": "--", "markersize": 7},
    "cloison": {"marker": "o", "linestyle": "-", "markersize": 5},
}


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
