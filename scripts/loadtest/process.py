"""The generator's process: its open-files limit and its event loop (uvloop when installed)."""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Coroutine
from typing import Any, TypeVar

from scripts.loadtest.limits import MAX_CONNECTIONS

T = TypeVar("T")


def fd_hard_limit() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return MAX_CONNECTIONS * 2 if hard == resource.RLIM_INFINITY else hard


def raise_fd_limit() -> None:
    """Raise the soft open-files limit to the hard one (a spawned server inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on uvloop when it is installed (as the server does), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)
