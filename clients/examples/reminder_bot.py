"""Reminder bot: ``/remind 10s stretch`` answers "Reminder: stretch" ten seconds later.

Delays are written as numbers with units, ``s``, ``m``, ``h`` or ``d``, combined as in
``1h30m``, up to a week. Reminders are kept in memory (a restart forgets them) and bounded: at
most ``MAX_PENDING`` wait at once, ``MAX_PENDING_PER_USER`` per author, so a flood of requests
cannot grow the bot without limit.

    python -m clients.examples.reminder_bot --url ws://127.0.0.1:8000/ws --token clo_...
"""

from __future__ import annotations

import asyncio
import collections
import re
from collections.abc import Sequence

from clients.bot import Bot, parse_bot_arguments
from clients.client import Encoding
from protocol import Message, UserId

# Why: each pending reminder is a sleeping task; a hard cap bounds the bot's memory.
MAX_PENDING = 100
# Why: one author cannot take every slot from the others.
MAX_PENDING_PER_USER = 10
MAX_DELAY_S = 7 * 86_400
_UNITS_S = {"s": 1, "m": 60, "h": 3_600, "d": 86_400}
_DELAY = re.compile(r"(?:\d+[smhd])+")
_PART = re.compile(r"(\d+)([smhd])")


def parse_delay(text: str) -> float | None:
    """Seconds for a delay such as ``10s`` or ``1h30m``; None if malformed or too long."""
    if not _DELAY.fullmatch(text):
        return None
    seconds = sum(int(n) * _UNITS_S[unit] for n, unit in _PART.findall(text))
    return float(seconds) if 0 < seconds <= MAX_DELAY_S else None


def build(url: str, token: str, *, encoding: Encoding = "json", join: Sequence[str] = ()) -> Bot:
    bot = Bot(url, token, encoding=encoding, join=join)
    # Commands come from live posts, which always have an author.
    pending: collections.Counter[UserId | None] = collections.Counter()

    async def fire(message: Message, delay_s: float, text: str) -> None:
        try:
            await asyncio.sleep(delay_s)
            await bot.reply(message, f"Reminder: {text}")
        finally:
            pending[message.author_id] -= 1
            if pending[message.author_id] <= 0:
                del pending[message.author_id]

    @bot.command("remind", help="DELAY TEXT: repeat TEXT after DELAY (10s, 5m, 1h30m)")
    async def remind(message: Message, args: str) -> None:
        when, _, text = args.partition(" ")
        delay_s = parse_delay(when.lower())
        if delay_s is None or not text.strip():
            await bot.reply(message, "Usage: /remind DELAY TEXT, for example /remind 10m tea")
            return
        if pending.total() >= MAX_PENDING or pending[message.author_id] >= MAX_PENDING_PER_USER:
            await bot.reply(message, "Too many pending reminders; try again later.")
            return
        pending[message.author_id] += 1
        bot.spawn(fire(message, delay_s, text.strip()), name="reminder")
        await bot.reply(message, f"OK, I will remind you in {when}.")

    return bot


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_bot_arguments("Reminder bot: /remind DELAY TEXT.", argv)
    return build(args.url, args.token, encoding=args.encoding, join=args.join).run()


if __name__ == "__main__":
    raise SystemExit(main())
