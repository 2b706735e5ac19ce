"""Per-key token buckets for write rate limits (in process)."""

from __future__ import annotations

from collections.abc import Hashable


class RateLimiter:
    """A token bucket per key: ``rate_per_s`` sustained, ``burst`` at most at once."""

    # Why: buckets of idle users are dropped once this many are held, to bound memory.
    MAX_KEYS = 100_000

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate_per_s = rate_per_s
        self.burst = float(burst)
        self._buckets: dict[Hashable, tuple[float, float]] = {}  # key -> (tokens, at_s)

    def take(self, key: Hashable, now_s: float) -> float:
        """Spend one token. Returns 0 when allowed, else the seconds until one is available."""
        tokens, at_s = self._buckets.get(key, (self.burst, now_s))
        tokens = min(self.burst, tokens + (now_s - at_s) * self.rate_per_s)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now_s)
            return (1.0 - tokens) / self.rate_per_s
        if len(self._buckets) >= self.MAX_KEYS and key not in self._buckets:
            self._evict_full(now_s)
        self._buckets[key] = (tokens - 1.0, now_s)
        return 0.0

    def _evict_full(self, now_s: float) -> None:
        refill_s = self.burst / self.rate_per_s
        self._buckets = {
            k: (t, at) for k, (t, at) in self._buckets.items() if now_s - at < refill_s
        }
