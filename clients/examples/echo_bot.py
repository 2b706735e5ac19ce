"""Echo bot: ``/echo TEXT`` (or ``!echo TEXT``) repeats TEXT; ``/help`` lists the commands.

Run it with a bot token::

    python -m clients.examples.echo_bot --url ws://127.0.0.1:8000/ws --token clo_...

It follows every sphere it is a member of; add it to one (or pass ``--join SPHERE_ID`` for an
open or public sphere) and write ``/echo hello``.
"""

from __future__ import annotations

from collections.abc import Sequence

from clients.bot import Bot, parse_bot_arguments
from clients.client import Encoding
from protocol import Message


def build(url: str, token: str, *, encoding: Encoding = "json", join: Sequence[str] = ()) -> Bot:
    bot = Bot(url, token, encoding=encoding, join=join)

    @bot.command("echo", help="TEXT: repeat TEXT")
    async def echo(message: Message, args: str) -> None:
        await bot.reply(message, args or "(nothing to echo)")

    @bot.on_mention
    async def greet(message: Message) -> None:
        await bot.reply(message, "Hello! Write /echo TEXT and I will repeat it; /help for more.")

    return bot


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_bot_arguments("Echo bot: repeats /echo TEXT.", argv)
    return build(args.url, args.token, encoding=args.encoding, join=args.join).run()


if __name__ == "__main__":
    raise SystemExit(main())
