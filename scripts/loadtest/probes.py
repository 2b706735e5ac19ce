"""Measurement of the server (CPU, RSS) and of the generator, and the progress line."""

from __future__ import annotations

import asyncio
import os
import sys
import time

from scripts.loadtest.fleet import Fleet
from scripts.loadtest.limits import PROGRESS_INTERVAL_S
from scripts.loadtest.publishers import Publishers


class ServerProbe:
    """CPU time and RSS of the server process, from /proc (Linux)."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid

    def cpu_s(self) -> float:
        if not self.pid:
            return 0.0
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        if not self.pid:
            return 0.0
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0


class Progress:
    """A live status line on stderr: rates since the previous tick, from live counters."""

    def __init__(self, enabled: bool, fleet: Fleet | None, publishers: Publishers | None) -> None:
        self.enabled = enabled
        self.fleet = fleet
        self.publishers = publishers
        self.label = ""
        self._tty = sys.stderr.isatty()

    async def run(self) -> None:
        started = last_t = time.perf_counter()
        last_d = last_p = 0
        ticks = 0
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL_S)
            ticks += 1
            now = time.perf_counter()
            delivered, conns = self.fleet.live() if self.fleet else (0, 0)
            published = self.publishers.published() if self.publishers else 0
            dt = max(now - last_t, 1e-9)
            line = (
                f"{self.label:<28} {now - started:6.1f}s  conns {conns:>7,}  "
                f"published {(published - last_p) / dt:>9,.0f}/s  "
                f"delivered {(delivered - last_d) / dt:>11,.0f}/s"
            )
            last_t, last_d, last_p = now, delivered, published
            if self._tty:
                sys.stderr.write("\r" + line)
            elif ticks % 5 == 0:
                sys.stderr.write(line + "\n")
            sys.stderr.flush()

    def say(self, text: str) -> None:
        if self.enabled:
            sys.stderr.write(("\r\x1b[K" if self._tty else "") + text + "\n")
            sys.stderr.flush()

    def finish(self) -> None:
        if self.enabled and self._tty:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
