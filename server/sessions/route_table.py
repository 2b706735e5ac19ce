"""The shape of the account-style route tables of the HTTP API, and what serves them.

``AccountRoute`` is one row: a route under ``/api/v1`` that is not an operation of the
operation table (accounts, administration, deletion, holds), with what the OpenAPI document
says of it. ``RouteShell`` serves one table: one route per row, the administrators' check,
then the row's handler, a method of the ``RouteShell`` subclass that owns the table
(``server.sessions.routes.AccountRoutes``, ``server.privacy.deletion_routes.DeletionRoutes``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from protocol import CloisonError, ErrorCode
from server.auth import Principal

Handler = Callable[[Request, Principal], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]
Respond = Callable[[Any, int], Response]
Schema = dict[str, Any]


@dataclass(frozen=True, slots=True)
class AccountRoute:
    """One account or administration route under ``/api/v1``."""

    method: str
    path: str
    # A method of the routes class that serves the table (AccountRoutes, or another's).
    handler: Callable[[Any, Request, Principal], Awaitable[Response]]
    summary: str
    reply: Schema  # JSON Schema of the success body
    status: int = 200
    admin: bool = False  # server administrators only (403 ``forbidden`` for anyone else)
    # Open to anyone, without a bearer token (signing in); the table's class serves these.
    public: bool = False
    query: tuple[tuple[str, Schema], ...] = ()
    body: Schema | None = None  # JSON Schema of the request body, when the route takes one
    media_type: str = "application/json"  # of the success body
    headers: tuple[tuple[str, str], ...] = ()  # response headers of a success: (name, what)


class RouteShell:
    """What every table of account-style routes shares: one route per row, the administrators'
    check before the body is read, then the row's handler, called on this object."""

    def __init__(
        self,
        table: Sequence[AccountRoute],
        *,
        guard: Callable[[Handler], Endpoint],
        read_body: Callable[[Request], Awaitable[dict[str, Any]]],
        respond: Respond,
    ) -> None:
        self._table = table
        self._guard = guard
        self._body = read_body
        self._respond = respond

    def routes(self) -> list[Route]:
        """One route per row of the table."""
        return [
            Route(route.path, self._endpoint(route), methods=[route.method])
            for route in self._table
        ]

    def _endpoint(self, route: AccountRoute) -> Endpoint:
        async def run(request: Request, principal: Principal) -> Response:
            # Administrators only, checked before the body is read.
            if route.admin and not principal.user.is_admin:
                raise CloisonError("server administrators only", code=ErrorCode.FORBIDDEN)
            return await route.handler(self, request, principal)

        return self._guard(run)
