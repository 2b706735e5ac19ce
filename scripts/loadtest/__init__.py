"""Cloison load generator: fan-out, saturation, idle, reconnect and history scenarios.

``cloison loadtest --help`` (or ``python -m scripts.loadtest --help``) prints the usage, which
``cli.py`` keeps in its docstring.

Theory of operation. Subscribers count every delivered ``message`` against what publishers
had acknowledged: per subscriber, an offset seen twice is a duplicate, an offset below the
highest one seen is reordered, and an acknowledged offset never seen after the drain is lost.
Nothing is assumed from counts alone. The per-subscriber state is the highest offset up to
which everything arrived plus the few offsets seen above it, so memory stays flat for long
runs. Latency is publish-send to delivery on ``time.perf_counter_ns`` (CLOCK_MONOTONIC, one
clock for every process of the machine), kept in log-linear buckets (within 1.6 %), which
merge across processes. Connections are websockets' sans-I/O client on bare asyncio
transports: frames are handled inside ``data_received`` with no task switch or queue per
message, because on a small machine the generator costs about as much per delivery as the
server it measures; ``--processes`` spreads subscribers over more generator processes.

Targets: ``--spawn`` starts a fresh server (temporary data directory, write rate limits lifted,
``--server-arg`` passed through, ``--taskset-server`` to pin it) and stops it afterwards;
``--url`` with ``--admin-token`` uses a running one (``--server-pid`` for CPU and RSS). With
``--relay`` the target is the baseline relay of ``scripts/bench_relay.py``: there is no admin
API, so tokens and sphere ids are made up. Everything is bounded in count and time: each
option has a hard cap and the whole run has ``--max-run-s``.

The files, bottom layer first:

- ``limits.py``: the hard cap of every option, timeouts, pacing constants, ``LoadError``;
- ``accounting.py``: the latency ``Histogram`` and acknowledged offsets as ranges;
- ``wire.py``: ``WireConnection`` (sans-I/O websockets on an asyncio transport), ``login``,
  ``Tasks``, bounded pools and keepalive;
- ``subscribers.py``: ``Subscriber`` (the per-connection accounting) and ``SubscriberGroup``;
- ``process.py``: the open-files limit and the event loop of a generator process;
- ``fleet.py``: subscriber groups in worker processes (``RemoteGroup``) and the ``Fleet``;
- ``publishers.py``: paced ``Publisher`` connections and their acks;
- ``targets.py``: a spawned or running server or relay, its admin API, ``provision``;
- ``probes.py``: the server's CPU and RSS, the generator's load, the progress line;
- ``report.py``: ``Phase`` and ``Report``, as a table or JSON;
- ``scenarios/``: ``rig.py`` (what they share) and one module per scenario;
- ``run.py``: the runner of each scenario, one run under ``--max-run-s``;
- ``cli.py``: the options, their checks and ``main``; ``__main__.py`` for ``python -m``.
"""

from scripts.loadtest.cli import loadtest_command, main

__all__ = ["loadtest_command", "main"]
