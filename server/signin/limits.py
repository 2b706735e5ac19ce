"""The sign-in rate limits: one bucket per account (the e-mail tried) and one per client address.

Both are ``server.ratelimit`` limiters: in this process, or in Redis when the gateways share
one, so that spreading guesses over several gateways gains nothing. Keys are SHA-256 digests:
Redis never holds an e-mail address or a client address. An unknown e-mail is counted like a
known one, so the limit tells nothing about which accounts exist.
"""

from __future__ import annotations

import hashlib

from protocol import RateLimitedError
from server.config import Config
from server.ratelimit import LocalWriteLimiter, RedisWriteLimiter, WriteLimiter
from server.redisclient import RedisGuard


class SignInLimits:
    def __init__(self, account: WriteLimiter, address: WriteLimiter) -> None:
        self._account = account
        self._address = address

    @classmethod
    def build(cls, config: Config, guard: RedisGuard | None) -> SignInLimits:
        rates = {
            "signin_account": (config.signin_account_per_min / 60, config.signin_account_burst),
            "signin_address": (config.signin_address_per_min / 60, config.signin_address_burst),
        }
        limiters: dict[str, WriteLimiter] = {}
        for name, (rate, burst) in rates.items():
            limiters[name] = (
                LocalWriteLimiter(rate, burst)
                if guard is None
                else RedisWriteLimiter(
                    guard, prefix=config.redis_prefix, rate_per_s=rate, burst=burst, cls=name
                )
            )
        return cls(limiters["signin_account"], limiters["signin_address"])

    async def address(self, address: str) -> None:
        """Spend one attempt of the client address.

        Raises:
            RateLimitedError: over the limit.
        """
        await _take(self._address, address, "too many sign-in attempts from this address")

    async def account(self, email_key: str) -> None:
        """Spend one attempt of the account (known or not).

        Raises:
            RateLimitedError: over the limit.
        """
        await _take(self._account, email_key, "too many sign-in attempts for this account")

    async def aclose(self) -> None:
        await self._account.aclose()
        await self._address.aclose()


async def _take(limiter: WriteLimiter, key: str, message: str) -> None:
    wait_s = await limiter.take(hashlib.sha256(key.encode()).hexdigest()[:32])
    if wait_s > 0:
        raise RateLimitedError(message, retry_after_ms=max(1, int(wait_s * 1000)))
