"""``cloison retention``: what retention kept, legal holds, and a pass of the job on demand.

The command reaches the store directly, like ``cloison user``: a hold set here is in force as
soon as the command returns, and nodes deliver its ``sphere`` event to live subscribers at
their next reconciliation with the store (``--reconcile-interval-s``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
from collections.abc import Awaitable, Callable

from protocol import CloisonError, SphereId, UserId
from server.cli import admin_config, iso_time, store_options, with_store
from server.config import Config
from server.operations import now_ms
from server.privacy.retention import RetentionJob, effective_days, set_hold
from storage import OPERATOR, RetentionStatus, Store

Action = Callable[[Store, Config], Awaitable[int]]


def retention_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="cloison retention", description="Retention periods, the job, and legal holds."
    )
    sub = parser.add_subparsers(dest="action", required=True)
    common = store_options()
    common.add_argument(
        "--retention-days",
        dest="retention_days",
        type=int,
        default=None,
        help="as for serve (the server's period, which a sphere's may not exceed)",
    )
    status = sub.add_parser(
        "status",
        parents=[common],
        help="per sphere: period, oldest retained post, horizon, last pass, legal hold",
    )
    status.add_argument("--sphere", default=None, help="this sphere only")
    status.add_argument("--after", default=None, help="start after this sphere id")
    status.add_argument("--limit", type=int, default=100, help="at most this many (1-1000)")
    hold = sub.add_parser(
        "hold", parents=[common], help="set a legal hold: no retention, no deletion (audited)"
    )
    hold.add_argument("sphere_id")
    hold.add_argument("--reason", required=True, help="why (shown to administrators only)")
    hold.add_argument(
        "--until", default=None, help="when it ends (ISO 8601, UTC if no zone); none: released"
    )
    release = sub.add_parser("release", parents=[common], help="lift a legal hold (audited)")
    release.add_argument("sphere_id")
    run = sub.add_parser("run", parents=[common], help="make one pass of the job now")
    run.add_argument(
        "--as-of",
        dest="as_of",
        default=None,
        help="judge ages as of this time (ISO 8601) instead of now: to test a period",
    )
    namespace = parser.parse_args(argv)
    try:
        until_ms = _time_ms(namespace.until) if namespace.action == "hold" else None
        as_of_ms = _time_ms(namespace.as_of) if namespace.action == "run" else None
    except ValueError as exc:
        parser.error(str(exc))
    if namespace.action == "status" and not 1 <= namespace.limit <= 1000:
        parser.error("--limit must be between 1 and 1000")
    config = admin_config(parser, namespace)
    if namespace.retention_days is not None:
        config = dataclasses.replace(config, retention_days=namespace.retention_days)
        try:
            config.validate()
        except ValueError as exc:
            parser.error(str(exc))
    return asyncio.run(_run(config, _action(namespace, until_ms, as_of_ms)))


def _time_ms(text: str | None) -> int | None:
    if text is None:
        return None
    when = datetime.datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return int(when.timestamp() * 1000)


def _action(ns: argparse.Namespace, until_ms: int | None, as_of_ms: int | None) -> Action:
    async def act(store: Store, config: Config) -> int:
        if ns.action == "status":
            if ns.sphere is not None:
                found = await store.retention_status(sphere_id=SphereId(ns.sphere), limit=1)
                if not found:
                    raise CloisonError(f"no sphere {ns.sphere}")
            else:
                found = await store.retention_status(after=ns.after, limit=ns.limit)
            for status in found:
                print(status_line(status, config.retention_days))
            for run in await store.retention_runs():
                print(
                    f"last pass by {run.node}: {iso_time(run.finished_ms)}, {run.spheres} spheres, "
                    f"{run.deleted} events removed"
                )
        elif ns.action == "hold":
            sphere, _ = await set_hold(
                store,
                SphereId(ns.sphere_id),
                UserId(OPERATOR),
                until_ms=until_ms,
                reason=ns.reason,
                now_ms=now_ms(),
            )
            until = "released" if until_ms is None else iso_time(until_ms)
            print(f"legal hold on {sphere.sphere_id} until {until}")
        elif ns.action == "release":
            sphere, event = await store.release_legal_hold(
                SphereId(ns.sphere_id), UserId(OPERATOR), now_ms=now_ms()
            )
            print(f"{'released' if event else 'no legal hold on'} {sphere.sphere_id}")
        else:
            job = RetentionJob(
                store,
                server_days=config.retention_days,
                node=OPERATOR,
                clock=(lambda: as_of_ms) if as_of_ms is not None else now_ms,
                batch=config.retention_batch,
                scrub=store.scrub,
            )
            run = await job.run_once()
            print(f"{run.spheres} spheres with a period, {run.deleted} events removed")
        return 0

    return act


def status_line(status: RetentionStatus, server_days: int) -> str:
    """One sphere, tab-separated: id, period, oldest post, horizon, last pass, hold."""
    days = effective_days(status.retention_days, server_days)
    own = "" if status.retention_days is None else " (own)"
    period = "forever" if days is None else f"{days} days{own}"
    oldest = "-" if status.oldest_ms is None else iso_time(status.oldest_ms)
    ran = "never" if status.run_ms is None else iso_time(status.run_ms)
    hold = status.hold
    if hold is None:
        held = "no hold"
    else:
        until = "released" if hold.until_ms is None else iso_time(hold.until_ms)
        held = f"hold since {iso_time(hold.since_ms)} until {until} by {hold.set_by}: {hold.reason}"
    return (
        f"{status.sphere_id}\t{period}\toldest {oldest}\tfrom offset {status.retained_from}"
        f"\tlast pass {ran}\t{held}"
    )


async def _run(config: Config, action: Action) -> int:
    return await with_store(config, lambda store: action(store, config))
