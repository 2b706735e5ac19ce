"""The ``cloison loadtest`` command line: options checked against their caps, then the run.

    cloison loadtest [fanout|saturate|idle|reconnect|history] (--spawn | --url URL) [options]

Scenarios (every option is checked against a hard cap):

- ``fanout`` (default): S spheres x M subscribing members, P publisher connections spread
  over the spheres, offering R messages/s in total for T seconds (``--rate`` may be given
  several times: one phase per rate, on the same connections).
- ``saturate``: the fan-out topology, stepping the offered rate x``--factor`` from
  ``--start-rate`` until a step fails, then bisecting ``--bisections`` times between the best
  pass and the lowest failure. A step passes when its p99 is at most ``--p99-ms``, every
  acknowledged message reached every subscriber after the drain, nothing was duplicated or
  reordered, no request failed, and the generator really offered 95 % of the rate. The result
  is the delivered rate of the best passing step and the server CPU per delivery there.
- ``idle``: N connections, each authenticated and subscribed to one of K spheres; reports the
  server's RSS growth per 1,000 connections.
- ``reconnect``: N subscribed clients; while publishers keep publishing, every connection drops
  at once and reconnects with ``since`` = its last applied position. Reports the time until all
  are subscribed again and what was lost, duplicated or reordered.
- ``history``: publishes M messages into one sphere, then readers page back through it;
  pages/s, page latency, and whether every message was read exactly once and in order.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from scripts.loadtest.limits import (
    FD_MARGIN,
    MAX_CONNECTIONS,
    MAX_DRAIN_S,
    MAX_HISTORY_MESSAGES,
    MAX_PHASES,
    MAX_PROCESSES,
    MAX_RATE_PER_S,
    MAX_RUN_S,
    MAX_SECONDS,
    MAX_STEPS,
    MAX_USERS,
    SCENARIOS,
    LoadError,
)
from scripts.loadtest.process import fd_hard_limit, raise_fd_limit, run_loop
from scripts.loadtest.run import connections_of, run_scenario
from scripts.loadtest.targets import Target, spawned


def _cpu_list(text: str) -> list[int]:
    try:
        cpus = [int(part) for part in text.split(",") if part]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected CPU numbers like 1 or 1,2: {text!r}") from None
    if not cpus:
        raise argparse.ArgumentTypeError("no CPU given")
    return cpus


def _bounded(kind: Callable[[str], Any], low: float, high: float) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    usage_text = __doc__.split("Theory of operation.")[0].split("\n", 1)[1]
    parser = argparse.ArgumentParser(
        prog="cloison loadtest",
        description=usage_text,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("scenario", nargs="?", choices=SCENARIOS, default="fanout")
    add = parser.add_argument_group

    where = add("target")
    one = where.add_mutually_exclusive_group(required=True)
    one.add_argument("--spawn", action="store_true", help="start a fresh server for the run")
    one.add_argument("--url", help="base URL of a running target, e.g. http://127.0.0.1:8000")
    where.add_argument("--relay", action="store_true", help="the target is scripts/bench_relay")
    where.add_argument(
        "--publish-url",
        help="fanout, saturate: publishers connect to this gateway (another node of the same "
        "cluster) while subscribers stay on --url, so every delivery crosses the broker",
    )
    where.add_argument("--admin-token", help="token of an admin user (--url, except --relay)")
    where.add_argument("--server-pid", type=int, help="with --url: pid for CPU and RSS figures")
    where.add_argument(
        "--server-arg", action="append", default=[], help="option for the spawned server; repeat"
    )
    where.add_argument("--taskset-server", metavar="CPUS", help="pin the spawned server: 0")
    where.add_argument(
        "--taskset-generator", metavar="CPUS", type=_cpu_list, help="pin the generator: 1 or 1,2"
    )

    shape = add("topology")
    shape.add_argument(
        "--spheres",
        type=_bounded(int, 1, 10_000),
        help="spheres (fanout, saturate: 1; idle: 100; reconnect: 10)",
    )
    shape.add_argument(
        "--members",
        type=_bounded(int, 1, MAX_CONNECTIONS),
        default=100,
        help="subscribers per sphere, fanout and saturate (%(default)s)",
    )
    shape.add_argument(
        "--connections",
        type=_bounded(int, 1, MAX_CONNECTIONS),
        default=1000,
        help=f"subscribers in all, idle and reconnect (%(default)s; at most {MAX_CONNECTIONS:,})",
    )
    shape.add_argument(
        "--users",
        type=_bounded(int, 1, MAX_USERS),
        default=10_000,
        help="distinct users at most, idle and reconnect; beyond, connections share (%(default)s)",
    )
    shape.add_argument(
        "--publishers",
        type=_bounded(int, 1, 1000),
        help="publishing connections (1; reconnect: one per sphere, at most 10)",
    )
    shape.add_argument(
        "--body-bytes", type=_bounded(int, 40, 16_384), default=128, help="(%(default)s)"
    )
    shape.add_argument("--encoding", choices=["json", "msgpack"], default="json")

    load = add("load")
    load.add_argument(
        "--rate",
        type=_bounded(float, 0.1, MAX_RATE_PER_S),
        action="append",
        help=f"messages/s offered in all (100); repeat for phases, at most {MAX_PHASES}",
    )
    load.add_argument(
        "--seconds",
        type=_bounded(float, 0.1, MAX_SECONDS),
        help="publishing phase (10); idle: hold before measuring (5); history: time cap (60)",
    )
    load.add_argument(
        "--drain-s",
        type=_bounded(float, 0, MAX_DRAIN_S),
        default=10.0,
        help="after a phase, wait this long at most for missing deliveries (%(default)s)",
    )

    sat = add("saturate")
    sat.add_argument(
        "--start-rate",
        type=_bounded(float, 0.1, MAX_RATE_PER_S),
        default=20.0,
        help="messages/s of the first step (%(default)s)",
    )
    sat.add_argument("--factor", type=_bounded(float, 1.05, 4.0), default=1.5, help="(%(default)s)")
    sat.add_argument(
        "--step-s", type=_bounded(float, 0.5, MAX_SECONDS), default=5.0, help="(%(default)s)"
    )
    sat.add_argument("--bisections", type=_bounded(int, 0, 10), default=2, help="(%(default)s)")
    sat.add_argument(
        "--max-steps",
        type=_bounded(int, 1, MAX_STEPS),
        default=30,
        help="bisections included (%(default)s)",
    )
    sat.add_argument(
        "--p99-ms",
        type=_bounded(float, 0.1, 60_000),
        default=50.0,
        help="latency bound of a passing step (%(default)s)",
    )

    other = add("reconnect and history")
    other.add_argument(
        "--drop-at-s",
        type=_bounded(float, 0, MAX_SECONDS),
        default=2.0,
        help="reconnect: when, into the publishing phase, every connection drops (%(default)s)",
    )
    other.add_argument(
        "--messages",
        type=_bounded(int, 1, MAX_HISTORY_MESSAGES),
        default=10_000,
        help="history: messages in the sphere (%(default)s)",
    )
    other.add_argument(
        "--write-rate",
        type=_bounded(float, 1, MAX_RATE_PER_S),
        default=5000.0,
        help="history: messages/s while filling the sphere (%(default)s)",
    )
    other.add_argument(
        "--page-size", type=_bounded(int, 1, 200), default=50, help="history (%(default)s)"
    )
    other.add_argument(
        "--readers",
        type=_bounded(int, 1, 1000),
        default=1,
        help="history: connections paging at once (%(default)s)",
    )

    gen = add("generator")
    gen.add_argument(
        "--processes",
        type=_bounded(int, 1, MAX_PROCESSES),
        default=1,
        help="spread subscribers over this many processes (%(default)s)",
    )
    gen.add_argument(
        "--concurrency",
        type=_bounded(int, 1, 10_000),
        default=200,
        help="handshakes in flight at once, when opening and in a storm (%(default)s)",
    )
    gen.add_argument(
        "--source-ips",
        type=_bounded(int, 0, 254),
        default=0,
        help="spread connections over 127.0.0.1..N (0: one per 25,000 connections)",
    )
    gen.add_argument(
        "--max-run-s",
        type=_bounded(float, 1, MAX_RUN_S),
        default=3600.0,
        help="the whole run's time limit (%(default)s)",
    )
    gen.add_argument("--json", action="store_true", help="print one JSON object")
    gen.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    fan = args.scenario in ("fanout", "saturate")
    if args.spheres is None:
        args.spheres = 1 if fan else 100 if args.scenario == "idle" else 10
    if args.publishers is None:
        args.publishers = min(args.spheres, 10) if args.scenario == "reconnect" else 1
    if args.seconds is None:
        args.seconds = {"idle": 5.0, "history": 60.0}.get(args.scenario, 10.0)
    args.rate = args.rate or [100.0]
    if len(args.rate) > MAX_PHASES:
        parser.error(f"at most {MAX_PHASES} rates")
    if args.relay and args.scenario == "history":
        parser.error("the relay keeps no history")
    if args.url and not args.relay and not args.admin_token:
        parser.error("--admin-token is required with --url (except with --relay)")
    if args.taskset_server and not args.spawn:
        parser.error("--taskset-server needs --spawn")
    connections = connections_of(args)
    if connections > MAX_CONNECTIONS:
        parser.error(f"at most {MAX_CONNECTIONS:,} subscribing connections")
    fds = fd_hard_limit() - FD_MARGIN
    if -(-connections // args.processes) > fds:
        parser.error(f"{connections:,} connections need more than {fds:,} fds per process: "
                     "use --processes")  # fmt: skip
    return args


@contextlib.contextmanager
def target_of(args: argparse.Namespace) -> Iterator[Target]:
    if args.spawn:
        with spawned(args.relay, args.server_arg, args.taskset_server) as target:
            yield target
    else:
        yield Target(args.url.rstrip("/"), args.server_pid, args.relay, args.admin_token)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_fd_limit()
    try:
        with target_of(args) as target:
            # Pin only now, so the spawned server does not inherit the generator's CPU.
            if args.taskset_generator:
                os.sched_setaffinity(0, {args.taskset_generator[0]})
            report = run_loop(run_scenario(args, target))
    except (LoadError, OSError) as exc:
        print(f"cloison loadtest: {exc}", file=sys.stderr)
        return 2
    except TimeoutError:
        print(f"cloison loadtest: the run exceeded --max-run-s {args.max_run_s:g}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.as_json()))
    else:
        print(report.table())
    return 0 if report.ok else 1


def loadtest_command(argv: list[str]) -> int:
    return main(argv)
