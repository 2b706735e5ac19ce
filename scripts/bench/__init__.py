"""The benchmark suite in one command: Cloison and the baseline relay, side by side.

    python -m scripts.bench [--quick] [--out docs/benchmarks.md] [--plots docs/bench]
                            [--server-cpu 0] [--generator-cpu 1] [--no-pin] [--stretch]
    python -m scripts.bench --render-only      # rewrite the report from docs/bench/results.json

Every figure comes from a fresh process started for it: ``scripts/loadtest/ --spawn``
(server pinned to one core with taskset, generator to another) against Cloison and against
``scripts/bench_relay.py``, the minimal relay on the websockets library's own server that marks
the practical limit of a Python relay. Runs, in order: fan-out at fixed offered rates,
saturation (x1.5 steps, then bisection), fan-out at half of each target's maximum, idle
connections, reconnect storms, SQLite durable ingest (``python -m storage.bench``, a
subprocess: scripts do not import storage) and the codec benchmark. Writes
``docs/benchmarks.md`` (machine, commands, each target of issue 5 with the measured figure and
the ratio to the relay in the same run), the raw results as ``results.json`` and two PNG plots
(delivered and p99 latency against offered load) into ``--plots``.

``--quick`` runs a scaled-down version in under two minutes: a smoke test of the suite whose
figures are not comparable with the targets. Every child run has a timeout, so the suite is
bounded in time.

The files:

- ``plan.py``: the full and ``--quick`` plans, the targets of issue 5, ``Run`` and ``Suite``;
- ``runner.py``: the machine's description and ``Runner``, each child run under a timeout;
- ``tables.py``: figures as text, the targets table and the phase tables;
- ``plots.py``: delivered rate and p99 latency against offered load, as PNG;
- ``report.py``: the Markdown report, ``results.json`` and loading it back;
- ``cli.py``: the options and ``main``; ``__main__.py`` for ``python -m scripts.bench``.
"""

from scripts.bench.cli import main

__all__ = ["main"]
