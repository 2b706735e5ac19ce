"""The single registry of wire error codes, close codes and the exception tree.

Error codes travel in ``error`` frames (and HTTP error bodies); close codes end a WebSocket.
Each carries whether retrying (or reconnecting) can help, so clients need no table of their own.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class ErrorCode(StrEnum):
    BAD_FRAME = "bad_frame"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNAUTHORIZED = "unauthorized"
    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"
    CHARTER_REQUIRED = "charter_required"  # accept the sphere's current charter first
    CONFLICT = "conflict"
    QUOTA_EXCEEDED = "quota_exceeded"  # the organisation's quota is reached: nothing was done
    LEGAL_HOLD = "legal_hold"  # the sphere is under a legal hold: nothing of it may be deleted
    TOO_LARGE = "too_large"
    RATE_LIMITED = "rate_limited"
    UNRECOVERABLE_POSITION = "unrecoverable_position"
    UNAVAILABLE = "unavailable"
    UNKNOWN = "unknown"
    INTERNAL = "internal"

    @property
    def retryable(self) -> bool:
        """True when the same request may succeed later without change."""
        return self in _RETRYABLE


_RETRYABLE = frozenset(
    {ErrorCode.RATE_LIMITED, ErrorCode.UNAVAILABLE, ErrorCode.UNKNOWN, ErrorCode.INTERNAL}
)


class CloseCode(IntEnum):
    # Standard codes the server uses.
    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    # 4000-4499: the client should reconnect (with backoff) and resume.
    SLOW_CONSUMER = 4000
    AUTH_TIMEOUT = 4001
    IDLE_TIMEOUT = 4002
    TOO_MANY_CONNECTIONS = 4003
    # 4500-4999: terminal; reconnecting with the same credentials fails again.
    UNAUTHORIZED = 4500
    UNSUPPORTED_PROTOCOL = 4501
    POLICY_VIOLATION = 4503

    @property
    def reconnect(self) -> bool:
        """True when a client should reconnect (after a jittered backoff) and resume."""
        if self >= 4000:
            return self < 4500
        return self in (
            CloseCode.GOING_AWAY,
            CloseCode.INTERNAL_ERROR,
            CloseCode.SERVICE_RESTART,
            CloseCode.TRY_AGAIN_LATER,
        )


class CloisonError(Exception):
    """Base of every error that maps to a wire code."""

    code: ErrorCode = ErrorCode.INTERNAL
    ref: str | None = None  # the ``ref`` of the request that failed, when known

    def __init__(self, message: str, *, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0])


class RateLimitedError(CloisonError):
    code = ErrorCode.RATE_LIMITED

    def __init__(self, message: str, *, retry_after_ms: int) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


class ProtocolViolation(CloisonError):
    """The peer sent something the protocol does not allow."""

    code = ErrorCode.BAD_FRAME


class FrameTooLarge(ProtocolViolation):
    code = ErrorCode.TOO_LARGE
