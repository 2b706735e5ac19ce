"""Bots on top of the SDK: decorated handlers for commands, mentions and messages.

A complete bot::

    from clients import Bot

    bot = Bot("ws://localhost:8000/ws", token)

    @bot.command("echo", help="TEXT: repeat TEXT")
    async def echo(message, args):
        await bot.reply(message, args)

    bot.run()

Theory of operation: ``serve()`` connects a ``Client``, subscribes to every sphere the bot is
a member of (and those named in ``join``), then reads events. Each post written by someone
else goes to the first of these that matches:

1. a command: the body starts with a prefix (``/`` or ``!``) and a registered command name;
   ``help`` is built in and lists the commands;
2. a mention, if ``on_mention`` handlers exist: ``@<bot name>`` or the bot's user id appears
   in the body;
3. anything else: the ``on_message`` handlers.

Other events (reactions, pins, membership changes such as bans and mutes) go to the
``on_event(kind)`` and ``on_member(action)`` handlers registered for them, the bot's own
included (a bot that pins posts may want to see its pins). The bot never routes its own posts,
nor edits and deletes, to command, mention or message handlers. Handlers run as tasks, at most
``max_concurrent_handlers`` at once (the next event waits for a free slot); an exception in a
handler is logged and the bot carries on. Membership events reach only the spheres a bot
follows, so a bot that someone adds to a private sphere finds it by listing its spheres again
every ``rescan_interval_s``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from clients.client import (
    Client,
    ClientError,
    ConnectionTerminatedError,
    Encoding,
    PositionLost,
    RequestError,
    SubscriptionFailed,
)
from protocol import (
    Ack,
    ErrorCode,
    EventKind,
    MemberAction,
    Message,
    SphereId,
    Unsubscribed,
    UserId,
)

logger = logging.getLogger(__name__)

MessageHandler = Callable[[Message], Awaitable[None]]
CommandHandler = Callable[[Message, str], Awaitable[None]]

# Why: enough parallel handlers for slow replies (a lookup, a reminder) without letting a flood
# of commands start unbounded work.
DEFAULT_MAX_CONCURRENT_HANDLERS = 16
# Why: spheres the bot was added to are only learnt by listing them (their events reach
# followers only);
# half a minute is a short wait for a human and one cheap request for the server.
DEFAULT_RESCAN_INTERVAL_S = 30.0
_COMMAND = re.compile(r"(\S+)\s*(.*)", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    handler: CommandHandler
    help: str


class _Tasks:
    """Background tasks with an owner: kept referenced, failures logged, cancelled on close."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("%s failed", task.get_name(), exc_info=task.exception())

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class Bot:
    """A bot: register handlers with the decorators, then ``run()`` (or ``await serve()``).

    Args:
        url: The server's ``/ws`` URL (``http://host:port`` works too).
        token: The bot's token (``cloison user create NAME --bot`` prints one).
        encoding: ``"json"`` or ``"msgpack"``.
        join: Spheres to join (open or public) or follow (already a member) at start.
        prefixes: The characters that start a command.
        max_concurrent_handlers: How many handlers may run at once.
        rescan_interval_s: How often to look for spheres the bot was added to; None: never.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        encoding: Encoding = "json",
        join: Iterable[str] = (),
        prefixes: str = "/!",
        max_concurrent_handlers: int = DEFAULT_MAX_CONCURRENT_HANDLERS,
        rescan_interval_s: float | None = DEFAULT_RESCAN_INTERVAL_S,
    ) -> None:
        self._url = url
        self._token = token
        self._encoding: Encoding = encoding
        self._join = [SphereId(s) for s in join]
        self._prefixes = prefixes
        self._rescan_interval_s = rescan_interval_s
        self._commands: dict[str, Command] = {}
        self._on_message: list[MessageHandler] = []
        self._on_mention: list[MessageHandler] = []
        self._on_kind: dict[EventKind, list[MessageHandler]] = {}
        self._on_action: dict[MemberAction, list[MessageHandler]] = {}
        self._client: Client | None = None
        self._mention: re.Pattern[str] | None = None
        self._ready = asyncio.Event()
        self._tasks = _Tasks()
        self._slots = asyncio.Semaphore(max_concurrent_handlers)

    # -- registration ---------------------------------------------------------------------

    def command(self, name: str, *, help: str = "") -> Callable[[CommandHandler], CommandHandler]:
        """Register ``handler(message, args)`` for ``/name args`` and ``!name args``.

        Args:
            name: The command, without prefix (matched case-insensitively).
            help: One line for ``/help``, usually ``ARGS: what it does``.

        Returns:
            A decorator that registers the handler and returns it unchanged.
        """
        key = name.lower()
        if not key or any(c.isspace() for c in key):
            raise ValueError(f"invalid command name {name!r}")

        def register(handler: CommandHandler) -> CommandHandler:
            self._commands[key] = Command(key, handler, help)
            return handler

        return register

    def on_message(self, handler: MessageHandler) -> MessageHandler:
        """Register ``handler(message)`` for posts that are neither commands nor mentions."""
        self._on_message.append(handler)
        return handler

    def on_mention(self, handler: MessageHandler) -> MessageHandler:
        """Register ``handler(message)`` for posts that mention the bot (and are no command)."""
        self._on_mention.append(handler)
        return handler

    def on_event(self, *kinds: EventKind) -> Callable[[MessageHandler], MessageHandler]:
        """Register ``handler(message)`` for events of ``kinds`` (``EventKind.REACT``,
        ``EventKind.PIN``...). Posts go to the handlers above, not here."""
        if not kinds or EventKind.POST in kinds:
            raise ValueError("name the event kinds; posts have their own handlers")

        def register(handler: MessageHandler) -> MessageHandler:
            for kind in kinds:
                self._on_kind.setdefault(kind, []).append(handler)
            return handler

        return register

    def on_member(self, *actions: MemberAction) -> Callable[[MessageHandler], MessageHandler]:
        """Register ``handler(message)`` for membership events with ``actions``
        (``MemberAction.BANNED``, ``MemberAction.MUTED``...); all of them when none is named."""
        chosen = actions or tuple(MemberAction)

        def register(handler: MessageHandler) -> MessageHandler:
            for action in chosen:
                self._on_action.setdefault(action, []).append(handler)
            return handler

        return register

    # -- acting ---------------------------------------------------------------------------

    @property
    def client(self) -> Client:
        """The connected SDK client, for anything the helpers below do not cover."""
        if self._client is None:
            raise RuntimeError("the bot is not running")
        return self._client

    @property
    def user_id(self) -> UserId:
        return self.client.user_id

    @property
    def name(self) -> str:
        return self.client.name

    async def reply(self, message: Message, text: str) -> Ack:
        """Post ``text`` in the sphere ``message`` came from."""
        return await self.client.publish(message.sphere_id, text)

    async def send(self, sphere_id: SphereId | str, text: str) -> Ack:
        """Post ``text`` in a sphere."""
        return await self.client.publish(sphere_id, text)

    async def join(self, sphere_id: SphereId | str) -> None:
        """Join an open or public sphere (or a private one the bot was added to) and follow it.

        Raises:
            RequestError: ``not_found`` when the sphere does not exist or is hidden.
        """
        try:
            await self.client.join(sphere_id)
        except RequestError as exc:
            # Private spheres cannot be joined, only entered by add_member; a bot that was
            # added can still follow one.
            if exc.code is not ErrorCode.NOT_FOUND:
                raise
        await self.client.subscribe(sphere_id)

    def spawn(self, work: Coroutine[Any, Any, None], *, name: str = "bot task") -> None:
        """Run ``work`` in the background, owned by the bot: failures are logged and it is
        cancelled when the bot stops (a reminder, a periodic job)."""
        self._tasks.spawn(work, name)

    # -- running --------------------------------------------------------------------------

    async def wait_ready(self) -> None:
        """Return once the bot is connected and follows its spheres."""
        await self._ready.wait()

    async def serve(self) -> None:
        """Connect, follow the bot's spheres and handle events until ``stop()``.

        Raises:
            ConnectionTerminatedError: The server refused the token, or revoked it.
        """
        if self._client is not None:
            raise RuntimeError("the bot is already running")
        async with Client(self._url, self._token, encoding=self._encoding) as client:
            self._client = client
            self._mention = re.compile(
                rf"(?<![\w@])@{re.escape(client.name)}(?![\w-])|{re.escape(client.user_id)}",
                re.IGNORECASE,
            )
            try:
                for sphere_id in self._join:
                    await self.join(sphere_id)
                await self._follow_all()
                if self._rescan_interval_s is not None:
                    self.spawn(self._rescan(self._rescan_interval_s), name="rescan spheres")
                logger.info("bot %s ready in %d spheres", client.name, len(client.subscriptions))
                self._ready.set()
                async for event in client.events():
                    if isinstance(event, Message):
                        await self._dispatch(event)
                    elif isinstance(event, PositionLost):
                        logger.warning("missed messages in %s (position lost)", event.sphere_id)
                    elif isinstance(event, SubscriptionFailed | Unsubscribed):
                        logger.info("no longer following %s", event.sphere_id)
            finally:
                self._ready.clear()
                await self._tasks.aclose()
                self._client = None

    async def stop(self) -> None:
        """Stop ``serve()``: close the connection and cancel running handlers."""
        if self._client is not None:
            await self._client.aclose()

    def run(self) -> int:
        """Run the bot until SIGINT or SIGTERM; the entry point of a bot script.

        Returns:
            An exit code: 0 after a signal, 1 when the server ended the connection for good.
        """
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        try:
            asyncio.run(self._serve_until_signal())
        except ConnectionTerminatedError as exc:
            logger.error("stopped: %s", exc)
            return 1
        return 0

    async def _serve_until_signal(self) -> None:
        serving = asyncio.create_task(self.serve())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, serving.cancel)
        try:
            await serving
        except asyncio.CancelledError:
            if not serving.cancelled():
                raise
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    # -- internals ------------------------------------------------------------------------

    async def _follow_all(self) -> None:
        client = self.client
        for sphere in await client.list_spheres():
            if sphere.sphere_id not in client.subscriptions:
                try:
                    await client.subscribe(sphere.sphere_id)
                except RequestError as exc:  # removed since the listing
                    logger.warning("cannot follow %s: %s", sphere.sphere_id, exc)

    async def _rescan(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self._follow_all()
            except (RequestError, TimeoutError) as exc:
                logger.warning("could not list spheres: %s", exc)
            except ClientError:
                return  # the client ended; serve() reports why

    def _route(self, message: Message) -> tuple[Callable[..., Awaitable[None]], tuple[Any, ...]]:
        """The handler a post goes to, with its arguments; see the module docstring."""
        body = (message.body or "").strip()
        if body[:1] and body[0] in self._prefixes:
            found = _COMMAND.fullmatch(body[1:])
            if found:
                name, args = found.group(1).lower(), found.group(2).strip()
                command = self._commands.get(name)
                if command is not None:
                    return command.handler, (message, args)
                if name == "help":
                    return self._help, (message,)
        if self._on_mention and self._mention is not None and self._mention.search(body):
            return self._fan_out, (self._on_mention, message)
        return self._fan_out, (self._on_message, message)

    def _event_handlers(self, message: Message) -> list[MessageHandler]:
        if message.kind is EventKind.MEMBER and message.action is not None:
            return self._on_action.get(message.action, [])
        return self._on_kind.get(message.kind, [])

    async def _dispatch(self, message: Message) -> None:
        handlers = self._event_handlers(message)
        if handlers:
            await self._slots.acquire()
            self._tasks.spawn(
                self._handle(self._fan_out, (handlers, message)), f"{message.kind} handler"
            )
            return
        if (
            message.kind is not EventKind.POST
            or message.deleted
            or not message.body
            or message.author_id == self.user_id
        ):
            return
        handler, args = self._route(message)
        await self._slots.acquire()
        self._tasks.spawn(self._handle(handler, args), f"handler for {message.sphere_id}")

    async def _handle(self, handler: Callable[..., Awaitable[None]], args: tuple[Any, ...]) -> None:
        try:
            await handler(*args)
        finally:
            self._slots.release()

    @staticmethod
    async def _fan_out(handlers: list[MessageHandler], message: Message) -> None:
        for handler in handlers:
            await handler(message)

    async def _help(self, message: Message) -> None:
        prefix = self._prefixes[0]
        lines = [
            f"{prefix}{c.name}" + (f" {c.help}" if c.help else "") for c in self._commands.values()
        ]
        lines.append(f"{prefix}help: list the commands")
        await self.reply(message, "Commands:\n" + "\n".join(lines))


@dataclass(frozen=True, slots=True)
class BotArguments:
    url: str
    token: str
    encoding: Encoding
    join: list[str]


def parse_bot_arguments(description: str, argv: Sequence[str] | None = None) -> BotArguments:
    """The command line every bot script shares: ``--url``, ``--token``, ``--encoding`` and
    ``--join`` (repeatable). The token may come from ``CLOISON_TOKEN`` instead, which keeps
    it out of ``ps`` listings; the URL from ``CLOISON_URL``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--url",
        default=os.environ.get("CLOISON_URL", "ws://127.0.0.1:8000/ws"),
        help="server URL [env CLOISON_URL; default %(default)s]",
    )
    parser.add_argument(
        "--token", default=os.environ.get("CLOISON_TOKEN"), help="bot token [env CLOISON_TOKEN]"
    )
    parser.add_argument("--encoding", choices=("json", "msgpack"), default="json")
    parser.add_argument(
        "--join", action="append", default=[], metavar="SPHERE_ID", help="join this sphere"
    )
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("a token is needed: --token or CLOISON_TOKEN")
    return BotArguments(args.url, args.token, args.encoding, args.join)
