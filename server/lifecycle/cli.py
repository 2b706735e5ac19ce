"""``cloison org``: organisations for the operator (docs/operations.md, "Organisations").

Each subcommand is one entry of ``SUBCOMMANDS``: how it adds its arguments, and what it runs
on the open store as the operator. Another package adds its own subcommand (``cloison org
sso``, say) with ``register``, without touching this file's commands.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from protocol import CloisonError, ErrorCode, OrgId, UserId, UserKind
from server.cli import admin_config, iso_time, store_options, with_store
from server.config import Config
from server.lifecycle.service import NO_SUCH_ORG, OrgDeletionRunner, OrgLifecycleService
from server.sessions.accounts import OPERATOR_ACTOR
from storage import OPERATOR, OrgDeletionState, OrgRecord, OrgRole, Store

Run = Callable[[Store, Config, argparse.Namespace], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class Subcommand:
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Run


SUBCOMMANDS: dict[str, Subcommand] = {}


def register(
    name: str, help: str, arguments: Callable[[argparse.ArgumentParser], None]
) -> Callable[[Run], Run]:
    """Add ``cloison org NAME``: ``arguments`` adds its options, the decorated coroutine runs
    it (its exit status; a ``CloisonError`` is printed and exits 1)."""

    def add(run: Run) -> Run:
        SUBCOMMANDS[name] = Subcommand(help, arguments, run)
        return run

    return add


def org_command(argv: list[str]) -> int:
    if argv[:1] == ["sso"]:  # single sign-on parses its own arguments (server.signin.cli)
        from server.signin.cli import sso_command

        return sso_command(argv[1:])
    parser = argparse.ArgumentParser(
        prog="cloison org",
        description="Create, list, suspend, resume, export and delete organisations.",
    )
    sub = parser.add_subparsers(dest="action", required=True)
    common = store_options()
    for name, command in SUBCOMMANDS.items():
        command.arguments(sub.add_parser(name, parents=[common], help=command.help))
    namespace = parser.parse_args(argv)
    config = admin_config(parser, namespace)
    run = SUBCOMMANDS[namespace.action].run
    return asyncio.run(with_store(config, lambda store: run(store, config, namespace)))


def _service(store: Store, config: Config) -> OrgLifecycleService:
    return OrgLifecycleService(store, config)


def _line(org: OrgRecord) -> str:
    state = f"suspended {iso_time(org.suspended_ms)}" if org.suspended_ms else "running"
    return f"{org.org_id}\t{state}\t{org.name}"


def _org_id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("org_id")


def _create_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name")
    parser.add_argument("--manager", default=None, help="the user id of its first manager")
    parser.add_argument("--id", dest="org_id", default=None, help="its id (default: a fresh one)")


@register("create", "create an organisation (audited)", _create_arguments)
async def _create(store: Store, config: Config, ns: argparse.Namespace) -> int:
    org = await _service(store, config).create(
        OPERATOR_ACTOR,
        ns.name,
        manager_id=UserId(ns.manager) if ns.manager else None,
        org_id=OrgId(ns.org_id) if ns.org_id else None,
    )
    print(f"org_id: {org.org_id}")
    return 0


def _add_user_arguments(parser: argparse.ArgumentParser) -> None:
    _org_id(parser)
    parser.add_argument("name")
    parser.add_argument("--manager", action="store_true", help="as a manager of it")
    parser.add_argument("--ttl-days", type=int, default=None, help="token lifetime (0: none)")


@register(
    "add-user",
    "create a user who belongs to this organisation only, and print its first token",
    _add_user_arguments,
)
async def _add_user(store: Store, config: Config, ns: argparse.Namespace) -> int:
    from server.operations import now_ms
    from server.sessions.accounts import Accounts

    org_id = OrgId(ns.org_id)
    if await store.get_org(org_id) is None:
        raise CloisonError(NO_SUCH_ORG, code=ErrorCode.NOT_FOUND)
    user, issued = await Accounts(store, config).enrol(
        OPERATOR_ACTOR,
        ns.name,
        UserKind.HUMAN,
        is_admin=False,
        ttl_days=ns.ttl_days,
        now_ms=now_ms(),
        org_id=None if ns.manager else org_id,  # a manager joins as one, below
    )
    if ns.manager:
        await store.add_org_member(
            org_id, user.user_id, OrgRole.MANAGER, now_ms=now_ms(), actor_id=OPERATOR
        )
    print(f"user_id:  {user.user_id}\ntoken_id: {issued.token_id}\ntoken:    {issued.token}")
    return 0


def _list_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--after", default=None, help="start after this org id")
    parser.add_argument("--limit", type=int, default=50, help="at most this many (1-100)")


@register("list", "list organisations, by id", _list_arguments)
async def _list(store: Store, config: Config, ns: argparse.Namespace) -> int:
    after = OrgId(ns.after) if ns.after else None
    for org in await _service(store, config).list(after=after, limit=ns.limit):
        print(_line(org))
    return 0


@register("show", "an organisation: members, spheres, deletion", _org_id)
async def _show(store: Store, config: Config, ns: argparse.Namespace) -> int:
    summary = await _service(store, config).show(OrgId(ns.org_id))
    print(_line(summary.org))
    print(f"members: {summary.members}\nspheres: {summary.spheres}")
    if summary.deletion is not None:
        print(f"deletion: {summary.deletion.state.value}")
    return 0


@register(
    "suspend",
    "suspend an organisation: its members cannot sign in, its live subscriptions end on "
    "every node; its data is kept",
    _org_id,
)
async def _suspend(store: Store, config: Config, ns: argparse.Namespace) -> int:
    org = await _service(store, config).set_suspended(OPERATOR_ACTOR, OrgId(ns.org_id), True)
    print(_line(org))
    return 0


@register("resume", "resume a suspended organisation", _org_id)
async def _resume(store: Store, config: Config, ns: argparse.Namespace) -> int:
    org = await _service(store, config).set_suspended(OPERATOR_ACTOR, OrgId(ns.org_id), False)
    print(_line(org))
    return 0


def _delete_arguments(parser: argparse.ArgumentParser) -> None:
    _org_id(parser)
    parser.add_argument(
        "--wait",
        action="store_true",
        help="run the job here (or wait for the gateway running it) until it is done or held, "
        "and the account deletions it requested too",
    )


@register(
    "delete",
    "delete an organisation with all its data: suspended at once, deleted in the background "
    "(docs/privacy.md)",
    _delete_arguments,
)
async def _delete(store: Store, config: Config, ns: argparse.Namespace) -> int:
    from server.privacy.account_deletion import DeletionRunner

    service = _service(store, config)
    job = await service.delete(OPERATOR_ACTOR, OrgId(ns.org_id))
    print(f"deletion of {job.org_id}: {job.state.value}")
    if not ns.wait:
        return 0
    owner = "cli-" + os.urandom(6).hex()
    runner = OrgDeletionRunner(store, config, owner=owner)
    while await runner.run(job.org_id) in (None, OrgDeletionState.PENDING):
        if (await service.job(job.org_id)).state is not OrgDeletionState.PENDING:
            break  # held, or done by a gateway
        await asyncio.sleep(1.0)
    accounts = DeletionRunner(store, config, owner=owner)
    await accounts.run_open()  # the accounts it handed over, and any other waiting
    job = await service.job(job.org_id)
    print(
        f"deletion of {job.org_id}: {job.state.value}, {job.spheres_deleted} spheres, "
        f"{job.accounts_handed_over} accounts"
    )
    return 0


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    _org_id(parser)
    parser.add_argument("--out", required=True, help="the zip file to write")


@register(
    "export", "write everything an organisation owns to a zip file (audited)", _export_arguments
)
async def _export(store: Store, config: Config, ns: argparse.Namespace) -> int:
    from server.lifecycle.export import OrgExport
    from server.operations import now_ms

    org = await store.get_org(OrgId(ns.org_id))
    if org is None:
        raise CloisonError(NO_SUCH_ORG, code=ErrorCode.NOT_FOUND)
    export = OrgExport(store, org, actor=OPERATOR, now_ms=now_ms())
    await export.plan()
    out = Path(ns.out)
    file = await asyncio.to_thread(out.open, "wb")
    try:
        async for chunk in export.chunks():
            await asyncio.to_thread(file.write, chunk)
    finally:
        await asyncio.to_thread(file.close)
    print(f"wrote {out} ({sum(export.counts.values())} lines)")
    return 0
