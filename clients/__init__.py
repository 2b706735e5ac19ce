"""Cloison's Python clients; they reach the server over the wire and import only ``protocol``.

- ``client``: ``Client``, the asyncio SDK (requests, events, reconnect and resume), and every
  name it hands out; built of three layers, one module each, bottom first:
  ``_requests`` (its state; requests, the write outbox, safe resends), ``_subscriptions``
  (subscribe and resume by cursor, routing of decoded frames), ``_connection`` (the task that
  connects, authenticates, reads, keeps alive and reconnects);
- ``_governance``: the layer above them: invitations, moderation, charters, audit, reports,
  replies, reactions, pins, threads, mentions;
- ``errors``: the errors the SDK raises; ``events``: what ``events()`` yields and the bounded
  inbox; ``history``: ``HistoryIterator``;
- ``_reconnect``: the I/O-free part of reconnecting: close-code policy, backoff, cursors;
- ``bot``: ``Bot``, command/mention/message handlers on top of ``Client``;
- ``chat``: ``cloison chat``, a line-oriented terminal client;
- ``examples/``: runnable bots (``python -m clients.examples.echo_bot``).

A bot reads ``from clients import Bot``; an application ``from clients import Client``.
"""

from clients.bot import Bot
from clients.client import (
    BadRequestError,
    CharterRequiredError,
    Client,
    ClientClosedError,
    ClientError,
    ConflictError,
    Connected,
    ConnectionLostError,
    ConnectionTerminatedError,
    Disconnected,
    Event,
    EventKind,
    ForbiddenError,
    LegalHoldError,
    MemberAction,
    NotFoundError,
    PositionLost,
    RequestError,
    SubscriptionFailed,
    new_message_id,
)

__all__ = [
    "BadRequestError",
    "Bot",
    "CharterRequiredError",
    "Client",
    "ClientClosedError",
    "ClientError",
    "ConflictError",
    "Connected",
    "ConnectionLostError",
    "ConnectionTerminatedError",
    "Disconnected",
    "Event",
    "EventKind",
    "ForbiddenError",
    "LegalHoldError",
    "MemberAction",
    "NotFoundError",
    "PositionLost",
    "RequestError",
    "SubscriptionFailed",
    "new_message_id",
]
