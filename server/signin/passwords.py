"""Passwords: argon2id (argon2-cffi), hashed and verified on worker threads.

Parameters: OWASP's minimum for argon2id (19 MiB of memory, 2 passes, 1 lane). A verification
takes about 21 ms on the reference machine (docs/security.md). Each hash holds its memory while
it runs, so at most ``MAX_CONCURRENT`` run at once: a burst of sign-ins waits instead of
taking a gigabyte. A stored hash made with weaker parameters is upgraded at the next sign-in.
"""

from __future__ import annotations

import asyncio
import secrets
import unicodedata
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from protocol import ProtocolViolation

TIME_COST = 2
MEMORY_KIB = 19 * 1024
PARALLELISM = 1
# Why: 4 x 19 MiB bounds the memory of hashing; more would not be faster on a few cores.
MAX_CONCURRENT = 4
# NIST SP 800-63B: at least 8 characters, and long passphrases accepted.
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 256


def valid_password(value: Any, field: str = "password") -> str:
    """A new password: 8 to 256 characters, any characters but control ones; NFC-normalised so
    the same passphrase typed on two keyboards is the same password.

    Raises:
        ProtocolViolation: anything else.
    """
    if not isinstance(value, str):
        raise ProtocolViolation(f"{field}: expected a string")
    password = unicodedata.normalize("NFC", value)
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise ProtocolViolation(f"{field}: {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters")
    if any(unicodedata.category(c) == "Cc" for c in password):
        raise ProtocolViolation(f"{field}: no control characters")
    return password


def presented(value: Any) -> str:
    """A password as presented at sign-in: any string, normalised; too long is refused early so
    that hashing time does not grow with what a client sends."""
    if not isinstance(value, str) or len(value) > MAX_PASSWORD_CHARS:
        raise ProtocolViolation(f"password: a string of at most {MAX_PASSWORD_CHARS} characters")
    return unicodedata.normalize("NFC", value)


class Passwords:
    def __init__(self, *, concurrency: int = MAX_CONCURRENT) -> None:
        self._hasher = PasswordHasher(
            time_cost=TIME_COST, memory_cost=MEMORY_KIB, parallelism=PARALLELISM
        )
        self._slots = asyncio.Semaphore(concurrency)
        # What an unknown account's password is checked against, so that both answers cost
        # one verification (no account oracle by timing).
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> bool:
        """Whether ``password`` matches ``stored``; with ``stored`` None, the same work and
        False."""
        async with self._slots:
            return await asyncio.to_thread(self._verify, stored, password)

    def _verify(self, stored: str | None, password: str) -> bool:
        try:
            self._hasher.verify(stored or self._dummy, password)
        except (VerificationError, InvalidHashError):
            return False
        return stored is not None

    def needs_rehash(self, stored: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(stored)
        except InvalidHashError:
            return True
