"""RateLimiter: a token bucket per key, driven by an injected clock."""

from __future__ import annotations

import pytest

from server.ratelimit import RateLimiter


def test_burst_then_refused() -> None:
    limiter = RateLimiter(rate_per_s=2.0, burst=3)
    assert [limiter.take("u", 100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("u", 100.0) == pytest.approx(0.5)  # one token at 2 per second


def test_retry_after_shrinks_as_time_passes() -> None:
    limiter = RateLimiter(rate_per_s=2.0, burst=1)
    assert limiter.take("u", 0.0) == 0.0
    assert limiter.take("u", 0.0) == pytest.approx(0.5)
    assert limiter.take("u", 0.25) == pytest.approx(0.25)
    assert limiter.take("u", 0.5) == 0.0  # refused calls do not cost a token
    assert limiter.take("u", 0.5) == pytest.approx(0.5)


def test_waiting_the_retry_after_is_enough() -> None:
    limiter = RateLimiter(rate_per_s=3.0, burst=2)
    now = 10.0
    limiter.take("u", now)
    limiter.take("u", now)
    wait = limiter.take("u", now)
    assert wait > 0
    assert limiter.take("u", now + wait * 0.9) > 0
    assert limiter.take("u", now + wait) == 0.0


def test_refill_is_capped_at_the_burst() -> None:
    limiter = RateLimiter(rate_per_s=10.0, burst=2)
    limiter.take("u", 0.0)
    # A long idle period refills to the burst, not beyond it.
    results = [limiter.take("u", 3600.0) for _ in range(3)]
    assert results[:2] == [0.0, 0.0]
    assert results[2] == pytest.approx(0.1)


def test_sustained_rate() -> None:
    limiter = RateLimiter(rate_per_s=4.0, burst=1)
    # 128 tries a second for 10 s (binary fractions, so the sums are exact): one every 0.25 s.
    allowed = [t / 128 for t in range(1280) if limiter.take("u", t / 128) == 0.0]
    assert allowed == [k / 4 for k in range(40)]


def test_keys_are_independent() -> None:
    limiter = RateLimiter(rate_per_s=1.0, burst=1)
    assert limiter.take("alice", 0.0) == 0.0
    assert limiter.take("alice", 0.0) > 0
    assert limiter.take("bob", 0.0) == 0.0
    assert limiter.take(("alice", "sphere"), 0.0) == 0.0  # any hashable key


class SmallLimiter(RateLimiter):
    MAX_KEYS = 3


def test_idle_full_buckets_are_evicted_at_the_bound() -> None:
    limiter = SmallLimiter(rate_per_s=1.0, burst=2)  # full again 2 s after the last take
    for key in ("a", "b", "c"):
        limiter.take(key, 0.0)
    limiter.take("c", 5.0)  # c is recent; a and b have refilled
    limiter.take("d", 5.0)
    assert set(limiter._buckets) == {"c", "d"}
    assert len(limiter._buckets) <= SmallLimiter.MAX_KEYS


def test_eviction_never_forgives_a_debt() -> None:
    """A bucket that is not yet full is kept, so eviction cannot reset anyone's limit."""
    limiter = SmallLimiter(rate_per_s=1.0, burst=1)
    for key in ("a", "b", "c"):
        assert limiter.take(key, 0.0) == 0.0
    assert limiter.take("d", 0.5) == 0.0
    assert {"a", "b", "c"} <= set(limiter._buckets)
    assert limiter.take("a", 0.5) == pytest.approx(0.5)


def test_known_keys_do_not_trigger_eviction() -> None:
    limiter = SmallLimiter(rate_per_s=1.0, burst=1)
    for key in ("a", "b", "c"):
        limiter.take(key, 0.0)
    limiter.take("a", 100.0)  # at the bound, but "a" is already held
    assert set(limiter._buckets) == {"a", "b", "c"}


def test_default_bound() -> None:
    assert RateLimiter.MAX_KEYS == 100_000
