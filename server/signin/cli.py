"""Sign-in from the command line: ``cloison org sso ...`` and ``cloison user create --email``.

``sso_command`` takes what follows ``cloison org sso``. The client secret is read from standard
input (``--client-secret-stdin``) so that it is not left in the shell history or in ``ps``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from protocol import OrgId, UserId
from server.cli import admin_config, store_options, with_store
from server.config import Config
from server.signin.limits import SignInLimits
from server.signin.passwords import Passwords
from server.signin.routes import sso_config, sso_json
from server.signin.service import SignIn
from server.signin.sessions import Sessions
from storage import OPERATOR, Store


def sso_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="cloison org sso", description="An organisation's single sign-on (OpenID Connect)."
    )
    sub = parser.add_subparsers(dest="action", required=True)
    common = store_options()
    put = sub.add_parser("set", parents=[common], help="set (or replace) the provider")
    put.add_argument("org_id")
    put.add_argument("--issuer", required=True, help="the provider's issuer URL")
    put.add_argument("--client-id", required=True)
    put.add_argument(
        "--client-secret-stdin", action="store_true", required=True, help="read it from stdin"
    )
    put.add_argument(
        "--email-domain",
        action="append",
        default=[],
        help="a domain whose verified e-mails may sign in (repeat; none: any)",
    )
    put.add_argument("--provision", action="store_true", help="create a member on a first sign-in")
    for action, text in (("show", "show the provider (not its secret)"), ("remove", "remove it")):
        sub.add_parser(action, parents=[common], help=text).add_argument("org_id")
    namespace = parser.parse_args(argv)
    config = admin_config(parser, namespace)
    secret = sys.stdin.readline().strip() if namespace.action == "set" else ""

    async def act(store: Store) -> int:
        from server.operations import now_ms

        org_id = OrgId(namespace.org_id)
        if namespace.action == "set":
            data = {
                "issuer": namespace.issuer,
                "client_id": namespace.client_id,
                "client_secret": secret,
                "email_domains": namespace.email_domain,
                "provision": namespace.provision,
            }
            sso = sso_config(org_id, data, now_ms=now_ms())
            await store.set_sso(sso, actor_id=OPERATOR)
            print(f"single sign-on of {org_id}: {sso.issuer}")
        elif namespace.action == "show":
            shown = await store.get_sso(org_id)
            if shown is None:
                print(f"error: {org_id} has no single sign-on", file=sys.stderr)
                return 1
            for key, value in sso_json(shown).items():
                print(f"{key}: {value}")
        elif not await store.delete_sso(org_id, now_ms=now_ms(), actor_id=OPERATOR):
            print(f"error: {org_id} has no single sign-on", file=sys.stderr)
            return 1
        else:
            print(f"removed the single sign-on of {org_id}")
        return 0

    return asyncio.run(with_store(config, act))


async def enrol_email(store: Store, user_id: UserId, email: str, password: str | None) -> None:
    """``cloison user create --email``: the login e-mail, and the password read from stdin."""
    from server.operations import now_ms

    config = Config()  # sessions and limits are not used by an enrolment
    signin = SignIn(
        store, Sessions(store, config), Passwords(concurrency=1), SignInLimits.build(config, None)
    )
    await signin.enrol(OPERATOR, user_id, email, password, now_ms=now_ms())
