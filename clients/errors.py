"""The errors the SDK raises: server refusals, terminal closes, lost or closed connections."""

from __future__ import annotations

from protocol import CloisonError, ErrorCode, ErrorReply


class ClientError(Exception):
    """Base of the errors this SDK raises."""


class RequestError(ClientError, CloisonError):
    """The server answered a request with an ``error`` frame.

    ``code`` is the ``ErrorCode`` (``internal`` for a code this SDK does not know, whose wire
    value stays in ``wire_code``); ``retryable`` and ``retry_after_ms`` are the server's.
    """

    def __init__(self, reply: ErrorReply) -> None:
        try:
            code = ErrorCode(reply.code)
        except ValueError:
            code = ErrorCode.INTERNAL
        super().__init__(reply.message, code=code)
        self.wire_code = reply.code
        self.retryable = reply.retryable
        self.retry_after_ms = reply.retry_after_ms
        self.ref = reply.ref

    def __str__(self) -> str:
        return f"{self.wire_code}: {self.message}"


class ConnectionTerminatedError(ClientError):
    """The server ended the connection with a code that says not to reconnect (or the client
    gave up); a new token or a fixed client is needed before trying again."""

    def __init__(self, message: str, *, close_code: int | None = None) -> None:
        super().__init__(message)
        self.close_code = close_code


class ConnectionLostError(ClientError):
    """The connection dropped before the reply to a request that is not safe to resend;
    the request may or may not have taken effect."""


class ClientClosedError(ClientError):
    """The client was closed (``aclose``) before or while the call ran."""


class _ConnectionLost(Exception):
    """Internal: the connection a request went out on is gone."""
