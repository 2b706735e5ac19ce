"""The errors the SDK raises: server refusals, terminal closes, lost or closed connections.

Every refusal is a ``RequestError`` with its ``code``; the common codes also have their own
subclass (``NotFoundError``, ``ForbiddenError``, ``ConflictError``, ``CharterRequiredError``,
``LegalHoldError``, ``BadRequestError``) so an application can catch just the one it handles.
"""

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


class BadRequestError(RequestError):
    """``bad_frame``, ``too_large``: the request itself is wrong; fix it before resending."""


class NotFoundError(RequestError):
    """``not_found``: it does not exist, or it is hidden from you (the server says the same)."""


class ForbiddenError(RequestError):
    """``forbidden``: your role in the sphere (or a ban or mute) does not allow it."""


class ConflictError(RequestError):
    """``conflict``: the state forbids it now (already a member, invitation used or expired)."""


class CharterRequiredError(RequestError):
    """``charter_required``: accept the sphere's current charter first (``charter`` then
    ``accept_charter``)."""


class LegalHoldError(RequestError):
    """``legal_hold``: the sphere is under a legal hold; nothing of it may be deleted until an
    administrator releases the hold (or it ends)."""


_BY_CODE: dict[ErrorCode, type[RequestError]] = {
    ErrorCode.BAD_FRAME: BadRequestError,
    ErrorCode.TOO_LARGE: BadRequestError,
    ErrorCode.NOT_FOUND: NotFoundError,
    ErrorCode.FORBIDDEN: ForbiddenError,
    ErrorCode.CONFLICT: ConflictError,
    ErrorCode.CHARTER_REQUIRED: CharterRequiredError,
    ErrorCode.LEGAL_HOLD: LegalHoldError,
}


def request_error(reply: ErrorReply) -> RequestError:
    """The ``RequestError`` for an ``error`` frame: the subclass its code names, if any."""
    try:
        kind = _BY_CODE.get(ErrorCode(reply.code), RequestError)
    except ValueError:
        kind = RequestError
    return kind(reply)


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
