"""Latency histograms that merge across processes, and acknowledged offsets as ranges."""

from __future__ import annotations

import bisect
from collections.abc import Iterable

_SUB_BITS = 6  # 64 sub-buckets per power of two: at most 1/64 = 1.6 % relative error
_BUCKETS = (41 << _SUB_BITS) + (1 << _SUB_BITS)  # up to 2**41 ns, about 36 minutes


class Histogram:
    """Nanosecond samples in log-linear buckets: bounded memory, mergeable, picklable."""

    __slots__ = ("counts", "max_ns", "total")

    def __init__(self) -> None:
        self.counts = [0] * _BUCKETS
        self.total = 0
        self.max_ns = 0

    def record(self, ns: int) -> None:
        if ns < 128:
            index = max(ns, 0)
        else:
            shift = ns.bit_length() - 7
            index = min((shift << _SUB_BITS) + (ns >> shift), _BUCKETS - 1)
        self.counts[index] += 1
        self.total += 1
        if ns > self.max_ns:
            self.max_ns = ns

    def merge(self, other: Histogram) -> None:
        for i, n in enumerate(other.counts):
            if n:
                self.counts[i] += n
        self.total += other.total
        self.max_ns = max(self.max_ns, other.max_ns)

    def percentile_ns(self, q: float) -> int:
        if not self.total:
            return 0
        rank = min(self.total - 1, int(q * self.total))
        seen = 0
        for index, n in enumerate(self.counts):
            seen += n
            if seen > rank:
                return min(_bucket_value(index), self.max_ns)
        return self.max_ns

    def summary_ms(self) -> dict[str, float]:
        return {
            "p50": round(self.percentile_ns(0.50) / 1e6, 3),
            "p95": round(self.percentile_ns(0.95) / 1e6, 3),
            "p99": round(self.percentile_ns(0.99) / 1e6, 3),
            "max": round(self.max_ns / 1e6, 3),
        }


def _bucket_value(index: int) -> int:
    if index < 128:
        return index
    shift = (index >> _SUB_BITS) - 1
    mantissa = index - (shift << _SUB_BITS)
    return (mantissa << shift) + (1 << shift) // 2  # the bucket's middle


# Acknowledged offsets of a sphere: inclusive (first, last) ranges, ascending and disjoint.
Ranges = list[tuple[int, int]]


def to_ranges(offsets: Iterable[int]) -> Ranges:
    ranges: Ranges = []
    for offset in sorted(set(offsets)):
        if ranges and ranges[-1][1] == offset - 1:
            ranges[-1] = (ranges[-1][0], offset)
        else:
            ranges.append((offset, offset))
    return ranges


def count_ranges(ranges: Ranges) -> int:
    return sum(last - first + 1 for first, last in ranges)


def _in_ranges(offset: int, ranges: Ranges, starts: list[int]) -> bool:
    i = bisect.bisect_right(starts, offset) - 1
    return i >= 0 and ranges[i][0] <= offset <= ranges[i][1]
