"""The error and close code registry, and the exception tree."""

from __future__ import annotations

import pytest

from protocol import (
    CloisonError,
    CloseCode,
    ErrorCode,
    FrameTooLarge,
    ProtocolViolation,
    RateLimitedError,
)

# Whether the same request may succeed later without change; spelled out per code so that a
# new code has to take a position here.
RETRYABLE = {
    ErrorCode.BAD_FRAME: False,
    ErrorCode.UNSUPPORTED_VERSION: False,
    ErrorCode.UNAUTHORIZED: False,
    ErrorCode.NOT_FOUND: False,
    ErrorCode.FORBIDDEN: False,
    ErrorCode.CHARTER_REQUIRED: False,
    ErrorCode.CONFLICT: False,
    ErrorCode.QUOTA_EXCEEDED: False,
    ErrorCode.LEGAL_HOLD: False,
    ErrorCode.TOO_LARGE: False,
    ErrorCode.RATE_LIMITED: True,
    ErrorCode.UNRECOVERABLE_POSITION: False,
    ErrorCode.UNAVAILABLE: True,
    ErrorCode.UNKNOWN: True,
    ErrorCode.INTERNAL: True,
}

RECONNECT = {
    CloseCode.NORMAL: False,
    CloseCode.GOING_AWAY: True,
    CloseCode.PROTOCOL_ERROR: False,
    CloseCode.MESSAGE_TOO_BIG: False,
    CloseCode.INTERNAL_ERROR: True,
    CloseCode.SERVICE_RESTART: True,
    CloseCode.TRY_AGAIN_LATER: True,
    CloseCode.SLOW_CONSUMER: True,
    CloseCode.AUTH_TIMEOUT: True,
    CloseCode.IDLE_TIMEOUT: True,
    CloseCode.TOO_MANY_CONNECTIONS: True,
    CloseCode.UNAUTHORIZED: False,
    CloseCode.UNSUPPORTED_PROTOCOL: False,
    CloseCode.POLICY_VIOLATION: False,
}


def test_every_error_code_is_in_the_table() -> None:
    assert set(RETRYABLE) == set(ErrorCode)


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda c: c.value)
def test_retryable(code: ErrorCode) -> None:
    assert code.retryable is RETRYABLE[code]


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda c: c.value)
def test_error_codes_are_snake_case_wire_strings(code: ErrorCode) -> None:
    assert code.value == code.name.lower()
    assert code == code.value  # a StrEnum compares equal to its wire string
    assert ErrorCode(code.value) is code


def test_every_close_code_is_in_the_table() -> None:
    assert set(RECONNECT) == set(CloseCode)


@pytest.mark.parametrize("code", list(CloseCode), ids=lambda c: c.name)
def test_reconnect(code: CloseCode) -> None:
    assert code.reconnect is RECONNECT[code]


@pytest.mark.parametrize("code", list(CloseCode), ids=lambda c: c.name)
def test_close_code_ranges(code: CloseCode) -> None:
    """Private codes: 4000-4499 reconnect, 4500-4999 terminal; standard ones are listed."""
    if 4000 <= code < 4500:
        assert code.reconnect
    elif 4500 <= code < 5000:
        assert not code.reconnect
    else:
        assert code in (1000, 1001, 1002, 1009, 1011, 1012, 1013)


def test_standard_close_code_values() -> None:
    standard = [
        CloseCode.NORMAL,
        CloseCode.GOING_AWAY,
        CloseCode.PROTOCOL_ERROR,
        CloseCode.MESSAGE_TOO_BIG,
        CloseCode.INTERNAL_ERROR,
        CloseCode.SERVICE_RESTART,
        CloseCode.TRY_AGAIN_LATER,
    ]
    assert [int(c) for c in standard] == [1000, 1001, 1002, 1009, 1011, 1012, 1013]


def test_close_codes_are_unique() -> None:
    assert len({int(c) for c in CloseCode}) == len(CloseCode)


def test_cloison_error_defaults() -> None:
    exc = CloisonError("boom")
    assert exc.code is ErrorCode.INTERNAL
    assert exc.message == "boom"
    assert str(exc) == "boom"
    assert exc.ref is None


def test_code_can_be_overridden_per_instance() -> None:
    exc = ProtocolViolation("no", code=ErrorCode.UNAUTHORIZED)
    assert exc.code is ErrorCode.UNAUTHORIZED
    assert ProtocolViolation("no").code is ErrorCode.BAD_FRAME  # the class default is untouched


def test_ref_is_per_instance() -> None:
    first, second = ProtocolViolation("a"), ProtocolViolation("b")
    first.ref = "r1"
    assert second.ref is None
    assert ProtocolViolation.ref is None


def test_exception_tree() -> None:
    assert issubclass(ProtocolViolation, CloisonError)
    assert issubclass(FrameTooLarge, ProtocolViolation)
    assert issubclass(RateLimitedError, CloisonError)
    assert not issubclass(RateLimitedError, ProtocolViolation)
    assert issubclass(CloisonError, Exception)
    assert FrameTooLarge("big").code is ErrorCode.TOO_LARGE


def test_rate_limited_error_carries_the_wait() -> None:
    exc = RateLimitedError("slow down", retry_after_ms=250)
    assert exc.code is ErrorCode.RATE_LIMITED
    assert exc.code.retryable
    assert exc.retry_after_ms == 250
    assert exc.message == "slow down"
