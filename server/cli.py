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
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path

from protocol import UserId, UserKind
from server.config import Config

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
        parser.add_argument(
            flag,
            dest=f.name,
            default=None,
            help=f"{f.metadata.get('help', '')} [env {env}; default {shown!s}]",
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


def _store_options() -> argparse.ArgumentParser:
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


def _admin_config(parser: argparse.ArgumentParser, namespace: argparse.Namespace) -> Config:
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
    common = _store_options()
    create = sub.add_parser(
        "create", parents=[common], help="create a user or bot and print its first token"
    )
    create.add_argument("name")
    create.add_argument("--bot", action="store_true", help="a bot account")
    create.add_argument("--admin", action="store_true", help="may use the admin HTTP API")
    create.add_argument("--ttl-days", type=int, default=None, help="token lifetime (0: none)")
    namespace = parser.parse_args(argv)
    config = _admin_config(parser, namespace)
    kind = UserKind.BOT if namespace.bot else UserKind.HUMAN
    return asyncio.run(
        _create_user(config, namespace.name, kind, namespace.admin, namespace.ttl_days)
    )


def token_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="cloison token", description="Issue or revoke tokens.")
    sub = parser.add_subparsers(dest="action", required=True)
    common = _store_options()
    create = sub.add_parser("create", parents=[common], help="issue a new token for a user")
    create.add_argument("user_id")
    create.add_argument("--ttl-days", type=int, default=None, help="token lifetime (0: none)")
    revoke = sub.add_parser(
        "revoke", parents=[common], help="revoke a token (by its id or the whole token)"
    )
    revoke.add_argument("token")
    namespace = parser.parse_args(argv)
    config = _admin_config(parser, namespace)
    if namespace.action == "create":
        return asyncio.run(_create_token(config, UserId(namespace.user_id), namespace.ttl_days))
    return asyncio.run(_revoke_token(config, namespace.token))


def _ttl_ms(config: Config, ttl_days: int | None) -> int | None:
    days = config.token_ttl_days if ttl_days is None else ttl_days
    return days * 86_400_000 if days > 0 else None


async def _create_user(
    config: Config, name: str, kind: UserKind, is_admin: bool, ttl_days: int | None
) -> int:
    from server.auth import issue_token
    from server.operations import now_ms
    from storage import open_store

    store = await open_store(config.resolved_store_url)
    try:
        user = await store.create_user(name, kind, is_admin=is_admin, now_ms=now_ms())
        issued = await issue_token(
            store, user.user_id, now_ms=now_ms(), ttl_ms=_ttl_ms(config, ttl_days)
        )
    finally:
        await store.aclose()
    print(f"user_id:  {user.user_id}\ntoken_id: {issued.token_id}\ntoken:    {issued.token}")
    return 0


async def _create_token(config: Config, user_id: UserId, ttl_days: int | None) -> int:
    from server.auth import issue_token
    from server.operations import now_ms
    from storage import open_store

    store = await open_store(config.resolved_store_url)
    try:
        if await store.get_user(user_id) is None:
            print(f"no user {user_id}", file=sys.stderr)
            return 1
        issued = await issue_token(
            store, user_id, now_ms=now_ms(), ttl_ms=_ttl_ms(config, ttl_days)
        )
    finally:
        await store.aclose()
    print(f"token_id: {issued.token_id}\ntoken:    {issued.token}")
    return 0


async def _revoke_token(config: Config, token: str) -> int:
    from server.auth import split_token
    from storage import open_store

    parts = split_token(token)
    token_id = parts[0] if parts is not None else token
    store = await open_store(config.resolved_store_url)
    try:
        revoked = await store.revoke_token(token_id)
    finally:
        await store.aclose()
    if not revoked:
        print(f"no token {token_id}", file=sys.stderr)
        return 1
    print(f"revoked {token_id}")
    return 0
