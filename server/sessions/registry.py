"""This node's live sessions, indexed by token and by user.

The gateway enters a session under its token id *before* it reads the token from the store,
and binds it to its user *before* it reads the user. A revocation or a disabling commits its
``session_changes`` row at some instant T. If the gateway's read comes after T it sees the
change and refuses; if it came before, the session was registered before T, so the watcher,
which reads the row after T, finds it. Either way no socket outlives the change by more than
one poll of the watcher. A session ended before its connection is attached is marked, and the
gateway refuses it instead of attaching.

A connection opened with the access token of a sign-in session (``server.signin.sessions``)
is also entered under that session, before the session is read, by the same argument: it
then ends with the session, not with the access token, which expires long before.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from protocol import CloseCode, UserId
from server.auth import DISABLED as DISABLED, SUSPENDED as SUSPENDED
from server.connection import Connection
from storage import ChangeKind, SessionChange

# Close reasons of 4500, documented in docs/protocol.md section 16.
REVOKED = "token revoked"
EXPIRED = "token expired"
# DISABLED and SUSPENDED: as ``server.auth`` refuses a sign-in.
SESSION_ENDED = "session ended"

K = TypeVar("K", str, UserId)


@dataclass(eq=False, slots=True)
class LiveSession:
    token_id: str
    user_id: UserId | None = None
    signin_id: str | None = None  # the sign-in session of an access token
    expires_ms: int | None = None
    conn: Connection | None = None
    ended: str | None = None  # why it was ended, if it was


@dataclass(slots=True)
class SessionRegistry:
    max_per_user: int
    _by_token: dict[str, set[LiveSession]] = field(default_factory=dict)
    _by_user: dict[UserId, set[LiveSession]] = field(default_factory=dict)
    _by_signin: dict[str, set[LiveSession]] = field(default_factory=dict)
    # (expires_ms, tie, session): entries of sessions that left are skipped when popped.
    _expiries: list[tuple[int, int, LiveSession]] = field(default_factory=list)
    _ties: itertools.count[int] = field(default_factory=itertools.count)

    def enter(self, token_id: str) -> LiveSession:
        """Register a session under its token id, before the token is read."""
        session = LiveSession(token_id)
        self._by_token.setdefault(token_id, set()).add(session)
        return session

    def join_signin(self, session: LiveSession, signin_id: str) -> None:
        """Register the session under its sign-in session, before that is read."""
        session.signin_id = signin_id
        self._by_signin.setdefault(signin_id, set()).add(session)

    def bind(self, session: LiveSession, user_id: UserId, expires_ms: int | None) -> bool:
        """Register the session under its user, before the user is read.

        Returns False (the session stays registered until ``leave``) when the user already has
        ``max_per_user`` sessions on this node.
        """
        session.user_id = user_id
        session.expires_ms = expires_ms
        same_user = self._by_user.setdefault(user_id, set())
        same_user.add(session)
        if expires_ms is not None:
            heapq.heappush(self._expiries, (expires_ms, next(self._ties), session))
        return len(same_user) <= self.max_per_user

    def attach(self, session: LiveSession, conn: Connection) -> bool:
        """Give the session its connection; False if it was ended meanwhile."""
        if session.ended is not None:
            return False
        session.conn = conn
        return True

    def leave(self, session: LiveSession) -> None:
        _discard(self._by_token, session.token_id, session)
        if session.user_id is not None:
            _discard(self._by_user, session.user_id, session)
        if session.signin_id is not None:
            _discard(self._by_signin, session.signin_id, session)
        session.ended = session.ended or "left"

    def sessions_of(self, user_id: UserId) -> int:
        return len(self._by_user.get(user_id, ()))

    def apply(self, change: SessionChange) -> int:
        """End what a change from the store names; returns how many sessions it ended."""
        if change.kind is ChangeKind.TOKEN_REVOKED and change.token_id is not None:
            return self.end_token(change.token_id, REVOKED)
        if change.kind is ChangeKind.USER_DISABLED:
            return self.end_user(change.user_id, DISABLED)
        if change.kind is ChangeKind.ORG_SUSPENDED and change.user_id:
            return self.end_user(change.user_id, SUSPENDED)
        if change.kind is ChangeKind.SESSION_REVOKED and change.token_id is not None:
            return self.end_session(change.token_id, SESSION_ENDED)
        return 0

    def end_token(self, token_id: str, reason: str) -> int:
        return _end(self._by_token.get(token_id, ()), reason)

    def end_session(self, signin_id: str, reason: str) -> int:
        return _end(self._by_signin.get(signin_id, ()), reason)

    def end_user(self, user_id: UserId, reason: str) -> int:
        return _end(self._by_user.get(user_id, ()), reason)

    def expire(self, now_ms: int) -> int:
        """End the sessions whose token has expired; the gateway's sweeper calls this."""
        ended = 0
        while self._expiries and self._expiries[0][0] <= now_ms:
            _, _, session = heapq.heappop(self._expiries)
            ended += _end((session,), EXPIRED)
        return ended


def _end(sessions: Iterable[LiveSession], reason: str) -> int:
    ended = 0
    for session in list(sessions):
        if session.ended is not None:
            continue
        session.ended = reason
        if session.conn is not None:
            session.conn.abort(CloseCode.UNAUTHORIZED, reason)
        ended += 1
    return ended


def _discard(index: dict[K, set[LiveSession]], key: K, session: LiveSession) -> None:
    same = index.get(key)
    if same is not None:
        same.discard(session)
        if not same:
            del index[key]
