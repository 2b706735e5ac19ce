"""The server session's transition table: which client frames each state accepts."""

from __future__ import annotations

import pytest

from protocol import (
    CLIENT_FRAMES,
    TRANSITIONS,
    Auth,
    ErrorCode,
    Frame,
    Ok,
    Ping,
    ProtocolViolation,
    ServerSession,
    SessionState,
)
from tests.unit.protocol import CLIENT_MINIMAL, SERVER_MINIMAL

NOT_AUTH = [f for f in CLIENT_MINIMAL if not isinstance(f, Auth)]
AUTH = Auth(token="clo_a_b", protocol=1)


def session_in(state: SessionState) -> ServerSession:
    """A session driven into ``state`` through its public methods only."""
    session = ServerSession()
    if state is SessionState.READY:
        session.authenticated()
    elif state is SessionState.CLOSED:
        session.closed()
    assert session.state is state
    return session


def refusal(session: ServerSession, frame: Frame) -> ProtocolViolation:
    with pytest.raises(ProtocolViolation) as info:
        session.accept(frame)
    return info.value


def test_table_shape() -> None:
    assert set(TRANSITIONS) == set(SessionState)
    assert TRANSITIONS[SessionState.AWAITING_AUTH] == {Auth}
    assert TRANSITIONS[SessionState.READY] == set(CLIENT_FRAMES) - {Auth}
    assert TRANSITIONS[SessionState.CLOSED] == frozenset()
    # Every client frame is accepted somewhere, and only client frames are.
    accepted = set().union(*TRANSITIONS.values())
    assert accepted == set(CLIENT_FRAMES)


def test_a_new_session_awaits_auth() -> None:
    session = ServerSession()
    assert session.state is SessionState.AWAITING_AUTH
    session.accept(AUTH)
    assert session.state is SessionState.AWAITING_AUTH  # accepting is not authenticating


@pytest.mark.parametrize("frame", NOT_AUTH, ids=lambda f: f.TYPE)
def test_awaiting_auth_refuses_everything_but_auth(frame: Frame) -> None:
    session = ServerSession()
    exc = refusal(session, frame)
    assert exc.code is ErrorCode.UNAUTHORIZED
    assert exc.message == "the first frame must be auth"
    assert session.state is SessionState.AWAITING_AUTH


@pytest.mark.parametrize("frame", NOT_AUTH, ids=lambda f: f.TYPE)
def test_ready_accepts_every_client_frame_but_auth(frame: Frame) -> None:
    session = session_in(SessionState.READY)
    session.accept(frame)
    assert session.state is SessionState.READY


def test_ready_refuses_a_second_auth() -> None:
    exc = refusal(session_in(SessionState.READY), AUTH)
    assert exc.code is ErrorCode.BAD_FRAME
    assert exc.message == "auth is not allowed now"


@pytest.mark.parametrize("frame", CLIENT_MINIMAL, ids=lambda f: f.TYPE)
def test_closed_accepts_nothing(frame: Frame) -> None:
    session = session_in(SessionState.CLOSED)
    exc = refusal(session, frame)
    assert exc.code is ErrorCode.BAD_FRAME
    assert exc.message == "the session is closed"
    assert session.state is SessionState.CLOSED


@pytest.mark.parametrize("frame", SERVER_MINIMAL, ids=lambda f: f.TYPE)
def test_server_frames_are_never_accepted(frame: Frame) -> None:
    for state in SessionState:
        with pytest.raises(ProtocolViolation):
            session_in(state).accept(frame)
    message = refusal(session_in(SessionState.READY), frame).message
    assert message == f"{frame.TYPE} is not allowed now"


@pytest.mark.parametrize("state", list(SessionState), ids=lambda s: s.value)
@pytest.mark.parametrize("frame", CLIENT_MINIMAL, ids=lambda f: f.TYPE)
def test_accept_follows_the_table(state: SessionState, frame: Frame) -> None:
    session = session_in(state)
    if type(frame) in TRANSITIONS[state]:
        session.accept(frame)
    else:
        refusal(session, frame)


def test_authenticated_twice_raises() -> None:
    session = ServerSession()
    session.authenticated()
    exc = refusal_of(session.authenticated)
    assert exc.message == "already authenticated"
    assert session.state is SessionState.READY


def test_authenticated_after_close_raises() -> None:
    session = session_in(SessionState.CLOSED)
    assert refusal_of(session.authenticated).message == "already authenticated"
    assert session.state is SessionState.CLOSED


def test_closed_from_any_state_and_twice() -> None:
    for state in SessionState:
        session = session_in(state)
        session.closed()
        session.closed()
        assert session.state is SessionState.CLOSED


def test_a_full_life() -> None:
    session = ServerSession()
    refusal(session, Ping())
    session.accept(AUTH)
    session.authenticated()
    session.accept(Ping())
    refusal(session, AUTH)
    refusal(session, Ok())
    session.closed()
    refusal(session, Ping())


def refusal_of(call: object) -> ProtocolViolation:
    with pytest.raises(ProtocolViolation) as info:
        call()  # type: ignore[operator]
    return info.value
