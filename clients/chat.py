"""``cloison chat``: a terminal client, one line per event, usable over SSH.

Commands::

    /spheres          your spheres with unread counts (numbered)
    /join N|ID        open sphere N of the list, or a sphere by id (joins open/public ones)
    /history [N]      N earlier messages of the open sphere (scroll back; default 20)
    /who              who is online in the open sphere
    /discover         open and public spheres you may join
    /create NAME      create a private sphere
    /help, /quit

plus the governance and conversation commands of ``clients._chat_governance`` (invitations,
join requests, moderation, charter, audit, settings, replies, reactions, pins, threads,
mentions, reports); ``/help`` lists them all.

Anything else is posted to the open sphere. Messages print as ``#OFFSET HH:MM name: text``,
prefixed with ``[sphere]`` when they belong to another sphere than the open one.

Replies show ``(re #OFFSET)``, reactions and pins on a post its counts and ``(pinned)``;
reactions, pins, bans, mutes and settings changes print as ``* ...`` notices. A sphere with a
charter the user has not accepted says so, and ``/accept-charter`` opens it.

Theory of operation: on a terminal, stdin goes into cbreak mode and this module edits the
input line itself, so it can redraw the line under incoming messages and send typing notices
while you type. On a pipe or a file it reads whole lines and sends no typing notices. Text
from the server is stripped of control characters before it reaches the terminal, so nobody
can send escape sequences to your screen.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import termios
import time
import tty
from collections.abc import Sequence
from dataclasses import replace

from clients import _chat_format as fmt
from clients._chat_governance import GOVERNANCE_HELP, GovernanceCommands, UsageError
from clients._terminal import Key, Stdin, Terminal, clean
from clients.client import (
    CharterRequiredError,
    Client,
    ConflictError,
    Connected,
    ConnectionLostError,
    ConnectionTerminatedError,
    Disconnected,
    Event,
    ForbiddenError,
    PositionLost,
    RequestError,
    SubscriptionFailed,
)
from protocol import (
    ErrorCode,
    EventKind,
    Invitation,
    MemberAction,
    Message,
    Presence,
    SphereId,
    SphereSummary,
    Subscribed,
    Unsubscribed,
    UserId,
    UserTyping,
)

# Why: a screenful of context when a sphere opens, and one more per /history.
DEFAULT_HISTORY_LINES = 20
# Why: the server forwards one typing notice per 2 s; sending more often only costs bytes.
TYPING_EVERY_S = 3.0
# Why: one "is typing" line per burst of notices, not one every 2 s while someone types.
TYPING_SHOWN_EVERY_S = 10.0

HELP = (
    """Commands:
  /spheres          your spheres with unread counts
  /join N|ID        open sphere N of the list (or by id; joins open and public spheres)
  /history [N]      show N earlier messages of the open sphere
  /who              who is online in the open sphere
  /discover         open and public spheres you may join
  /create NAME      create a private sphere
  /quit             quit the chat
"""
    + GOVERNANCE_HELP
    + """
Anything else is sent to the open sphere; @name mentions a member."""
)


class Chat(GovernanceCommands):
    """The chat session: what is shown, which sphere is open, and the commands."""

    def __init__(self, client: Client, terminal: Terminal, history_lines: int) -> None:
        self._client = client
        self._term = terminal
        self._history_lines = history_lines
        self._spheres: dict[SphereId, SphereSummary] = {}
        self._listed: list[SphereId] = []  # the numbering of the last /spheres
        self._current: SphereId | None = None
        self._names: dict[UserId, str] = {}
        self._online: dict[SphereId, set[UserId]] = {}
        self._oldest: dict[SphereId, int | None] = {}  # the earliest offset shown, for /history
        self._latest: dict[SphereId, int] = {}  # the newest offset seen, for read markers
        self._typing_sent_s = 0.0
        self._typing_shown_s: dict[UserId, float] = {}
        self._read_due = asyncio.Event()
        self._asking: SphereId | None = None
        self._charter_due: SphereId | None = None
        self._invitations: list[Invitation] = []
        self._deleting: SphereId | None = None
        self._commands = self._governance_commands()

    async def run(self, stdin: Stdin) -> None:
        """Show the spheres, then follow events and commands until /quit or end of input.

        Raises:
            ConnectionTerminatedError: The server ended the connection for good.
        """
        self._names[self._client.user_id] = self._client.name
        self._term.show(f"Connected as {self._client.name}. /help lists the commands.")
        spheres = await self._client.list_spheres()
        for sphere in spheres:
            self._spheres[sphere.sphere_id] = sphere
            await self._follow(sphere.sphere_id)
        self._print_spheres(spheres)
        events = asyncio.create_task(self._follow_events())
        markers = asyncio.create_task(self._send_read_markers())
        commands = asyncio.create_task(self._read_commands(stdin))
        try:
            await asyncio.wait({events, markers, commands}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (events, markers, commands):
                task.cancel()
            await asyncio.gather(events, markers, commands, return_exceptions=True)
        for task in (events, markers, commands):
            failure = None if task.cancelled() else task.exception()
            if failure is not None:
                raise failure

    # -- input ----------------------------------------------------------------------------

    async def _read_commands(self, stdin: Stdin) -> None:
        while True:
            data = await stdin.read()
            for item in self._term.feed(data):
                if item is Key.END:
                    return
                if item is Key.EDITED:
                    await self._typing()
                elif isinstance(item, str) and not await self._handle(item.strip()):
                    return

    async def _handle(self, line: str) -> bool:
        """Run one input line; False to quit."""
        if not line:
            return True
        command, _, arg = line.partition(" ")
        arg = arg.strip()
        try:
            if not line.startswith("/"):
                await self._send(line)
            elif command in ("/quit", "/exit"):
                return False
            elif command == "/help":
                for help_line in HELP.splitlines():
                    self._term.show(help_line)
            elif command == "/spheres":
                await self._flush_read_marker()
                self._print_spheres(await self._client.list_spheres())
            elif command == "/join":
                await self._open(arg)
            elif command == "/history":
                await self._history(max(1, int(arg)) if arg.isdecimal() else self._history_lines)
            elif command == "/who":
                self._who()
            elif command == "/discover":
                self._print_discover(await self._client.list_spheres(discover=True))
            elif command == "/create" and arg:
                sphere = await self._client.create_sphere(arg)
                self._spheres[sphere.sphere_id] = sphere
                if await self._follow(sphere.sphere_id):
                    await self._open_sphere(sphere.sphere_id)
            elif command in self._commands:
                await self._commands[command](arg)
            else:
                self._term.show(f"! unknown command {command}; /help lists them")
        except UsageError as exc:
            self._term.show(f"! {exc}")
        except CharterRequiredError:
            self.charter_prompt(self._charter_due or self._current or SphereId(arg))
        except RequestError as exc:
            self._term.show(f"! {exc}")
        except ConnectionLostError:
            self._term.show("! the connection dropped; check whether that took effect")
        except TimeoutError:
            self._term.show("! the server did not answer in time")
        return True

    async def _typing(self) -> None:
        now = time.monotonic()
        if self._current is not None and now - self._typing_sent_s >= TYPING_EVERY_S:
            self._typing_sent_s = now
            await self._client.typing(self._current)

    # -- commands -------------------------------------------------------------------------

    async def _send(self, text: str) -> None:
        if self._current is None:
            self._term.show("! no sphere is open: /spheres, then /join N")
            return
        self._typing_sent_s = 0.0
        await self._client.publish(self._current, fmt.with_mentions(text, self._names))

    async def _open(self, arg: str) -> None:
        if arg.isdecimal() and 1 <= int(arg) <= len(self._listed):
            sphere_id = self._listed[int(arg) - 1]
        elif arg and not arg.isdecimal():
            sphere_id = SphereId(arg)
        else:
            self._term.show("! /join N (a number from /spheres) or /join SPHERE_ID")
            return
        if sphere_id not in self._spheres:
            try:
                sphere = await self._client.join(sphere_id)
            except (ForbiddenError, ConflictError):
                self._asking = sphere_id
                self._term.show("! this sphere admits on approval: /request [NOTE] to ask")
                return
            self._spheres[sphere_id] = sphere
        if sphere_id in self._client.subscriptions or await self._follow(sphere_id):
            await self._open_sphere(sphere_id)

    async def _open_sphere(self, sphere_id: SphereId) -> None:
        await self._flush_read_marker()
        self._current = sphere_id
        name = clean(self._spheres[sphere_id].name)
        self._term.prompt = f"[{name}] "
        await self._learn_names(sphere_id)
        page = await self._client.history_page(sphere_id, limit=self._history_lines)
        self._term.show(f"-- {name} --" + ("" if page.messages else " (no messages yet)"))
        for message in page.messages:
            self._term.show(self._format(message))
        self._oldest[sphere_id] = page.messages[0].offset if page.has_more else None
        self._saw(sphere_id, self._spheres[sphere_id].offset)
        if page.messages:
            self._saw(sphere_id, page.messages[-1].offset)

    async def _history(self, count: int) -> None:
        sphere_id = self._current
        if sphere_id is None:
            self._term.show("! no sphere is open")
            return
        before = self._oldest.get(sphere_id)
        if before is None:
            self._term.show("-- no earlier messages --")
            return
        page = await self._client.history_page(sphere_id, before=before, limit=count)
        self._term.show(f"-- {len(page.messages)} earlier messages --")
        for message in page.messages:
            self._term.show(self._format(message))
        self._oldest[sphere_id] = page.messages[0].offset if page.has_more else None

    def _who(self) -> None:
        if self._current is None:
            self._term.show("! no sphere is open")
            return
        online = sorted(self._name(u) for u in self._online.get(self._current, set()))
        self._term.show("online: " + (", ".join(online) if online else "nobody"))

    def _print_spheres(self, spheres: list[SphereSummary]) -> None:
        if not spheres:
            self._term.show("You are in no sphere yet: /discover, or /create NAME.")
            return
        self._listed = [s.sphere_id for s in spheres]
        for n, sphere in enumerate(spheres, 1):
            self._spheres[sphere.sphere_id] = sphere
            mark = "*" if sphere.sphere_id == self._current else " "
            unread = f"  ({sphere.unread} unread)" if sphere.unread else ""
            self._term.show(f"{mark}{n:>3}. {clean(sphere.name)}{unread}")

    def _print_discover(self, spheres: list[SphereSummary]) -> None:
        if not spheres:
            self._term.show("No open or public spheres.")
        for sphere in spheres:
            member = " (member)" if sphere.role else ""
            self._term.show(
                f"  {sphere.sphere_id}  {clean(sphere.name)} [{sphere.privacy}]{member}"
            )
        if spheres:
            self._term.show("/join SPHERE_ID to enter one.")

    # -- events ---------------------------------------------------------------------------

    async def _follow(self, sphere_id: SphereId) -> bool:
        """Subscribe to the sphere; False when its charter must be accepted first."""
        try:
            subscribed = await self._client.subscribe(sphere_id)
        except CharterRequiredError:
            self.charter_prompt(sphere_id)
            return False
        self._online[sphere_id] = set(subscribed.online)
        await self._learn_names(sphere_id)
        return True

    async def _learn_names(self, sphere_id: SphereId) -> None:
        # Visitors, and members of a restricted sphere, do not see the member list.
        with contextlib.suppress(ForbiddenError):
            for member in await self._client.list_members(sphere_id):
                self._names[member.user_id] = member.name

    async def _follow_events(self) -> None:
        async for event in self._client.events():
            self._on_event(event)

    def _on_event(self, event: Event) -> None:
        current = self._current
        if isinstance(event, Message):
            self._on_message(event)
        elif isinstance(event, Subscribed):
            self._online[event.sphere_id] = set(event.online)
        elif isinstance(event, Presence):
            online = self._online.setdefault(event.sphere_id, set())
            if event.online:
                online.add(event.user_id)
            else:
                online.discard(event.user_id)
            if event.sphere_id == current:
                state = "is online" if event.online else "went offline"
                self._term.show(f"* {self._name(event.user_id)} {state}")
        elif isinstance(event, UserTyping):
            now = time.monotonic()
            if event.sphere_id == current and (
                now - self._typing_shown_s.get(event.user_id, -TYPING_SHOWN_EVERY_S)
                >= TYPING_SHOWN_EVERY_S
            ):
                self._typing_shown_s[event.user_id] = now
                self._term.show(f"* {self._name(event.user_id)} is typing...")
        elif (
            isinstance(event, SubscriptionFailed) and event.error.code is ErrorCode.CHARTER_REQUIRED
        ):
            self.charter_prompt(event.sphere_id)
        elif isinstance(event, Unsubscribed | SubscriptionFailed):
            self._spheres.pop(event.sphere_id, None)
            if current == event.sphere_id:
                self._current = None
                self._term.prompt = "> "
            self._term.show(f"! you no longer have access to {event.sphere_id}")
        elif isinstance(event, PositionLost):
            self._term.show(f"! some messages of {self._sphere_name(event.sphere_id)} were missed")
        elif isinstance(event, Disconnected):
            self._term.show(f"* connection lost; reconnecting in {event.retry_in_s:.1f} s")
        elif isinstance(event, Connected) and event.reconnected:
            self._term.show("* reconnected")

    def _on_message(self, message: Message) -> None:
        if message.author_id is not None:
            self._typing_shown_s.pop(message.author_id, None)
        if message.member_id is not None and message.member_name is not None:
            self._names[message.member_id] = message.member_name
        self._apply(message)
        if message.sphere_id == self._current:
            self._term.show(self._format(message))
            self._saw(message.sphere_id, message.offset)
            return
        self._term.show(f"[{self._sphere_name(message.sphere_id)}] {self._format(message)}")

    def _saw(self, sphere_id: SphereId, offset: int) -> None:
        if offset > self._latest.get(sphere_id, 0):
            self._latest[sphere_id] = offset
            self._read_due.set()

    async def _send_read_markers(self) -> None:
        """Move the read marker of the open sphere as messages are shown, one request at a
        time however fast they come."""
        while True:
            await self._read_due.wait()
            self._read_due.clear()
            await self._flush_read_marker()

    async def _flush_read_marker(self) -> None:
        sphere_id = self._current
        if sphere_id is not None and self._latest.get(sphere_id):
            # Access just lost (an event says so) or the server is slow: the next one catches up.
            with contextlib.suppress(RequestError, TimeoutError):
                await self._client.mark_read(sphere_id, self._latest[sphere_id])

    def _apply(self, message: Message) -> None:
        """Keep what the chat knows of a sphere current with its events."""
        sphere = self._spheres.get(message.sphere_id)
        if sphere is None:
            return
        if message.kind is EventKind.SPHERE and message.privacy is not None:
            self._spheres[message.sphere_id] = replace(
                sphere,
                privacy=message.privacy,
                name=message.name or sphere.name,
                listed=bool(message.listed),
                join_policy=message.join_policy or sphere.join_policy,
                history=message.history or sphere.history,
                charter_version=message.charter_version or 0,
            )
        elif message.member_id == self._client.user_id and message.action is MemberAction.MUTED:
            self._spheres[message.sphere_id] = replace(sphere, muted_until_ms=message.until_ms)
        elif message.member_id == self._client.user_id and message.action is MemberAction.UNMUTED:
            self._spheres[message.sphere_id] = replace(sphere, muted_until_ms=None)

    # -- formatting -----------------------------------------------------------------------

    def _sphere_name(self, sphere_id: SphereId) -> str:
        sphere = self._spheres.get(sphere_id)
        return clean(sphere.name) if sphere else sphere_id

    def _format(self, message: Message) -> str:
        return fmt.event(message, self._name)


async def run_chat(
    url: str, token: str, *, encoding: str, history_lines: int, term: Terminal
) -> int:
    """Connect and chat until /quit; returns the exit code."""
    try:
        async with Client(
            url, token, encoding="msgpack" if encoding == "msgpack" else "json"
        ) as client:
            await Chat(client, term, history_lines).run(Stdin(sys.stdin.fileno()))
    except ConnectionTerminatedError as exc:
        term.show(f"! disconnected: {exc}")
        return 1
    except TimeoutError:
        term.show(f"! no answer from {url}")
        return 1
    except RequestError as exc:
        term.show(f"! {exc}")
        return 1
    return 0


def chat_command(argv: list[str]) -> int:
    """``cloison chat``: the entry point registered in the ``cloison.commands`` group."""
    parser = argparse.ArgumentParser(prog="cloison chat", description="Chat from a terminal.")
    parser.add_argument(
        "--url",
        default=os.environ.get("CLOISON_URL", "ws://127.0.0.1:8000/ws"),
        help="server URL [env CLOISON_URL; default %(default)s]",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("CLOISON_TOKEN"),
        help="your token [env CLOISON_TOKEN, which keeps it out of ps listings]",
    )
    parser.add_argument("--encoding", choices=("json", "msgpack"), default="json")
    parser.add_argument(
        "--history",
        type=int,
        default=DEFAULT_HISTORY_LINES,
        help="messages shown when a sphere opens [default %(default)s]",
    )
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("a token is needed: --token or CLOISON_TOKEN")
    interactive = os.isatty(sys.stdin.fileno()) and os.isatty(sys.stdout.fileno())
    term = Terminal(sys.stdout, interactive=interactive)
    saved = termios.tcgetattr(sys.stdin.fileno()) if interactive else None
    try:
        if interactive:
            tty.setcbreak(sys.stdin.fileno())
        return asyncio.run(
            run_chat(
                args.url, args.token, encoding=args.encoding, history_lines=args.history, term=term
            )
        )
    except KeyboardInterrupt:
        return 0
    finally:
        if saved is not None:
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)
            sys.stdout.write("\n")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m clients.chat`` and the SDK distribution's ``cloison-chat`` script."""
    return chat_command(list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    raise SystemExit(main())
