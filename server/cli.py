"""The ``cloison`` command: a dispatcher over the ``cloison.commands`` entry points.

Each subcommand lives with the package that owns it and is imported only when it runs, so
a third party can add one without touching this file.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path

from protocol import UserId, UserKind
from server.config import Config
from server.sessions.accounts import OPERATOR_ACTOR, Accounts
from storage import Store

Command = Callable[[list[str]], int]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    commands = {ep.name: ep for ep in entry_points(group="cloison.commands")}
    if not args or args[0] in ("-h", "--help") or args[0] not in commands:
        names = ", ".join(sorted(commands))
        print(f"usage: cloison COMMAND [options]\ncommands: {names}", file=sys.stderr)
        return 0 if args and args[0] in ("-h", "--help") else 2
    command: Command = commands[args[0]].load()
    return command(args[1:])


def _config_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser with one ``--flag`` per Config field (help and default from the field)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--config",
        dest="config_file",
        default=os.environ.get("CLOISON_CONFIG"),
        help="TOML file of options (names as below, with underscores); flags and "
        "CLOISON_* variables win over it [env CLOISON_CONFIG]",
    )
    for f in dataclasses.fields(Config):
        flag = "--" + f.name.replace("_", "-")
        env = f"CLOISON_{f.name.upper()}"
        default = f.default
        shown = ",".join(default) if isinstance(default, tuple) else default
        # A switch may stand alone (``--public-pages``) or take a value (``--public-pages no``).
        switch = {"nargs": "?", "const": "true"} if f.type == "bool" else {}
        parser.add_argument(
            flag,
            dest=f.name,
            default=None,
            help=f"{f.metadata.get('help', '')} [env {env}; default {shown!s}]",
            **switch,  # type: ignore[arg-type]
        )
    return parser


def _load_config(namespace: argparse.Namespace) -> Config:
    """Flags are parsed like the variables they stand for, and win over them."""
    flags = {
        f"CLOISON_{f.name.upper()}": getattr(namespace, f.name)
        for f in dataclasses.fields(Config)
        if getattr(namespace, f.name, None) is not None
    }
    file = Path(namespace.config_file) if namespace.config_file else None
    return Config.load(env={**os.environ, **flags}, file=file)


def serve_command(argv: list[str]) -> int:
    parser = _config_parser("cloison serve", "Run the Cloison server.")
    try:
        config = _load_config(parser.parse_args(argv))
    except ValueError as exc:
        parser.error(str(exc))
    from server.runner import run

    run(config)
    return 0


def store_options() -> argparse.ArgumentParser:
    """The options every admin command shares: where the store is."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        dest="config_file",
        default=os.environ.get("CLOISON_CONFIG"),
        help="as for serve",
    )
    common.add_argument("--data-dir", dest="data_dir", default=None, help="as for serve")
    common.add_argument("--store-url", dest="store_url", default=None, help="as for serve")
    return common


def admin_config(parser: argparse.ArgumentParser, namespace: argparse.Namespace) -> Config:
    try:
        return Config.load(
            file=Path(namespace.config_file) if namespace.config_file else None,
            data_dir=Path(namespace.data_dir) if namespace.data_dir else None,
            store_url=namespace.store_url,
        )
    except ValueError as exc:
        parser.error(str(exc))


def user_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="cloison user", description="Manage users and bots.")
    sub = parser.add_subparsers(dest="action", required=True)
    common = store_options()
    create = sub.add_parser(
        "create", parents=[common], help="create a user or bot and print its first token"
    )
    create.add_argument("name")
    create.add_argument("--bot", action="store_true", help="a bot account")
    create.add_argument("--admin", action="store_true", help="may use the admin HTTP API")
    create.add_argument("--ttl-days", type=int, default=None, help="token lifetime (0: none)")
    create.add_argument("--email", default=None, help="the login e-mail (password sign-in, SSO)")
    create.add_argument(
        "--password-stdin", action="store_true", help="read a password from stdin (with --email)"
    )
    listing = sub.add_parser("list", parents=[common], help="list users, by user id")
    listing.add_argument("--after", default=None, help="start after this user id")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (1-100)")
    for action, text in (
        ("disable", "disable a user: its tokens stop working, its sockets close on every node"),
        ("enable", "enable a disabled user again"),
    ):
        sub.add_parser(action, parents=[common], help=text).add_argument("user_id")
    delete = sub.add_parser(
        "delete",
        parents=[common],
        help="delete an account: it is disabled and its sockets close at once; its "
        "memberships and what it wrote go in the background (docs/privacy.md)",
    )
    delete.add_argument("user_id")
    delete.add_argument(
        "--wait",
        action="store_true",
        help="run the job here (or wait for the gateway running it) until it is done or held",
    )
    rename = sub.add_parser("rename", parents=[common], help="change a user's display name")
    rename.add_argument("user_id")
    rename.add_argument("name")
    audit = sub.add_parser(
        "audit",
        parents=[common],
        help="list the audit log, newest first: credentials issued by someone other than "
        "their user, revocations and disablings by administrators",
    )
    audit.add_argument("--before", type=int, default=None, help="entries below this seq")
    audit.add_argument("--limit", type=int, default=50, help="at most this many (1-100)")
    namespace = parser.parse_args(argv)
    config = admin_config(parser, namespace)
    namespace.password = None
    if namespace.action == "create" and namespace.password_stdin:
        if not namespace.email:
            parser.error("--password-stdin needs --email")
        namespace.password = sys.stdin.readline().rstrip("\n")
    if namespace.action == "delete":
        return asyncio.run(_run(config, _delete_action(config, namespace)))
    return asyncio.run(_run(config, _user_action(namespace)))


def token_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="cloison token", description="Issue, list and revoke tokens."
    )
    sub = parser.add_subparsers(dest="action", required=True)
    common = store_options()
    create = sub.add_parser(
        "create",
        parents=[common],
        help="issue a token for a bot, or for a human who belongs to no sphere yet (audited)",
    )
    create.add_argument("user_id")
    create.add_argument("--ttl-days", type=int, default=None, help="token lifetime (0: none)")
    create.add_argument("--kind", choices=["session", "api"], default=None)
    create.add_argument("--label", default=None, help="a note shown in token lists")
    listing = sub.add_parser("list", parents=[common], help="list a user's live tokens")
    listing.add_argument("user_id")
    listing.add_argument("--cursor", default=None, help="next_cursor of the previous page")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (1-100)")
    revoke = sub.add_parser(
        "revoke", parents=[common], help="revoke a token (by its id or the whole token)"
    )
    revoke.add_argument("token")
    revoke_all = sub.add_parser(
        "revoke-all", parents=[common], help="close all sessions: revoke every token of a user"
    )
    revoke_all.add_argument("user_id")
    namespace = parser.parse_args(argv)
    config = admin_config(parser, namespace)
    return asyncio.run(_run(config, _token_action(namespace)))


Action = Callable[[Accounts], Awaitable[int]]


def _user_action(ns: argparse.Namespace) -> Action:
    async def act(accounts: Accounts) -> int:
        from server.operations import now_ms

        if ns.action == "create":
            kind = UserKind.BOT if ns.bot else UserKind.HUMAN
            user, issued = await accounts.enrol(
                OPERATOR_ACTOR,
                ns.name,
                kind,
                is_admin=ns.admin,
                ttl_days=ns.ttl_days,
                now_ms=now_ms(),
            )
            if ns.email:
                from server.signin.cli import enrol_email

                await enrol_email(accounts.store, user.user_id, ns.email, ns.password)
            print(
                f"user_id:  {user.user_id}\ntoken_id: {issued.token_id}\ntoken:    {issued.token}"
            )
        elif ns.action == "list":
            for user in await accounts.users(OPERATOR_ACTOR, after=ns.after, limit=ns.limit):
                flags = ",".join(
                    f for f, on in (("admin", user.is_admin), ("disabled", user.disabled)) if on
                )
                print(f"{user.user_id}\t{user.kind.value}\t{flags or '-'}\t{user.name}")
        elif ns.action == "audit":
            for e in await accounts.audit(OPERATOR_ACTOR, before=ns.before, limit=ns.limit):
                print(
                    f"{e.seq}\t{iso_time(e.ts_ms)}\t{e.actor}\t{e.action}\t{e.user_id or '-'}"
                    f"\t{e.token_id or '-'}\t{e.detail or '-'}"
                )
        elif ns.action in ("disable", "enable"):
            user = await accounts.set_disabled(
                OPERATOR_ACTOR, UserId(ns.user_id), ns.action == "disable", now_ms=now_ms()
            )
            print(f"{ns.action}d {user.user_id}")
        else:
            user = await accounts.rename(UserId(ns.user_id), ns.name)
            print(f"renamed {user.user_id} to {user.name!r}")
        return 0

    return act


def _delete_action(config: Config, ns: argparse.Namespace) -> Action:
    # Imported here, before the loop runs: importing the server's modules takes a while.
    from server.operations import now_ms
    from server.privacy.account_deletion import AccountDeletion, DeletionRunner
    from storage import DeletionState

    async def act(accounts: Accounts) -> int:
        deletion = AccountDeletion(accounts.store, config)
        job = await deletion.request(OPERATOR_ACTOR, UserId(ns.user_id), at_ms=now_ms())
        print(f"deletion of {job.user_id}: {job.state.value} ({job.mode.value})")
        if not ns.wait:
            return 0
        runner = DeletionRunner(accounts.store, config, owner="cli-" + os.urandom(6).hex())
        while (state := await runner.run(job.user_id)) is None:  # a gateway runs it
            await asyncio.sleep(1.0)
            current = await deletion.job(OPERATOR_ACTOR, job.user_id)
            if current.state is not DeletionState.PENDING:
                state = current.state
                break
        job = await deletion.job(OPERATOR_ACTOR, job.user_id)
        print(f"deletion of {job.user_id}: {state.value}, {job.rewritten} events rewritten")
        return 0

    return act


def _token_action(ns: argparse.Namespace) -> Action:
    async def act(accounts: Accounts) -> int:
        from server.auth import split_token
        from server.operations import now_ms
        from storage import TokenKind

        if ns.action == "create":
            issued = await accounts.issue_for(
                OPERATOR_ACTOR,
                UserId(ns.user_id),
                kind=TokenKind(ns.kind) if ns.kind else None,
                ttl_days=ns.ttl_days,
                label=ns.label,
                now_ms=now_ms(),
            )
            print(f"token_id: {issued.token_id}\ntoken:    {issued.token}")
        elif ns.action == "list":
            page = await accounts.tokens(
                OPERATOR_ACTOR,
                UserId(ns.user_id),
                cursor=ns.cursor,
                limit=ns.limit,
                now_ms=now_ms(),
            )
            for t in page.tokens:
                issuer = page.issuer_names.get(t.issued_by or "", t.issued_by or "unknown")
                expires = iso_time(t.expires_ms) if t.expires_ms is not None else "never"
                print(
                    f"{t.token_id}\t{t.kind.value}\tcreated {iso_time(t.created_ms)}"
                    f"\texpires {expires}\tissued by {issuer}\t{t.label or ''}"
                )
            if page.next_cursor is not None:
                print(f"next_cursor: {page.next_cursor[0]}.{page.next_cursor[1]}")
        elif ns.action == "revoke":
            parts = split_token(ns.token)
            token_id = parts[0] if parts is not None else ns.token
            await accounts.revoke(OPERATOR_ACTOR, token_id, owner=None, now_ms=now_ms())
            print(f"revoked {token_id}")
        else:
            revoked = await accounts.revoke_all(
                OPERATOR_ACTOR, UserId(ns.user_id), keep=None, now_ms=now_ms()
            )
            print(f"revoked {len(revoked)} tokens of {ns.user_id}")
        return 0

    return act


async def _run(config: Config, action: Action) -> int:
    """Run one account action as the operator, a refusal reported as exit 1."""
    return await with_store(config, lambda store: action(Accounts(store, config)))


async def with_store(config: Config, action: Callable[[Store], Awaitable[int]]) -> int:
    """Open the store, run ``action`` on it, close it; a refusal (``CloisonError``) is printed
    as ``error: ...`` and exit 1. Every admin command runs its work through here."""
    from protocol import CloisonError
    from storage import open_store

    try:
        store = await open_store(config.resolved_store_url)
    except CloisonError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    try:
        return await action(store)
    except CloisonError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    finally:
        await store.aclose()


def iso_time(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))
