"""The JSON HTTP API for bots and admin tools, beside the WebSocket on the same port.

The routes are the HTTP entries of the operation table (``server.operations.table``). Each
builds the same client frame a WebSocket client would send (path, query and JSON body merged
into one map) and validates it with the protocol's own rules, so both
transports share every check and every error code. Errors are JSON
``{"code", "message", "retryable"}`` with an HTTP status derived from the code. The OpenAPI
document of every route (``server.openapi``) is served at ``/api/v1/openapi.json``.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from protocol import (
    CloisonError,
    ErrorCode,
    ExportInfo,
    Frame,
    ProtocolViolation,
    RateLimitedError,
    decode_client_map,
    to_wire,
)
from server.auth import Principal, authenticate
from server.config import Config
from server.lifecycle.routes import OrgRoutes
from server.lifecycle.service import OrgLifecycleService
from server.openapi import DOCUMENT_PATH, openapi_document
from server.operations import OPERATIONS, Caller, Operations, now_ms
from server.operations.table import INTEGER_PATH_PARAMS
from server.privacy.account_deletion import AccountDeletion
from server.privacy.deletion_routes import DeletionRoutes
from server.privacy.export import Exports, not_head
from server.privacy.routes import HoldRoutes
from server.sessions.accounts import Accounts
from server.sessions.routes import AccountRoutes
from server.signin.oidc import Oidc
from server.signin.routes import SignInRoutes
from server.signin.service import SignIn
from storage import Store

logger = logging.getLogger(__name__)

STATUS = {
    ErrorCode.BAD_FRAME: 400,
    ErrorCode.UNSUPPORTED_VERSION: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.CHARTER_REQUIRED: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.QUOTA_EXCEEDED: 403,
    ErrorCode.LEGAL_HOLD: 409,
    ErrorCode.CHARTER_REQUIRED: 403,
    ErrorCode.UNRECOVERABLE_POSITION: 409,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.UNKNOWN: 503,
    ErrorCode.INTERNAL: 500,
}


# Why: API answers are per user and never a page to render: no caching, no type sniffing.
API_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status, API_HEADERS, media_type="application/json")


def error_response(exc: CloisonError) -> Response:
    body: dict[str, Any] = {
        "code": exc.code.value,
        "message": exc.message,
        "retryable": exc.code.retryable,
    }
    headers = {}
    if isinstance(exc, RateLimitedError):
        body["retry_after_ms"] = exc.retry_after_ms
        headers["Retry-After"] = str(max(1, exc.retry_after_ms // 1000))
    response = json_response(body, STATUS[exc.code])
    response.headers.update(headers)
    return response


Endpoint = Callable[[Request], Awaitable[Response]]


class HttpApi:
    def __init__(
        self,
        config: Config,
        store: Store,
        operations: Operations,
        accounts: Accounts,
        deletion: AccountDeletion,
        exports: Exports,
        signin: SignIn,
        oidc: Oidc,
        lifecycle: OrgLifecycleService | None = None,
    ) -> None:
        self._config = config
        self._store = store
        self._ops = operations
        self._exports = exports
        self._accounts = AccountRoutes(
            accounts,
            exports,
            guard=self._guard,
            read_body=self._body,
            respond=json_response,
        )
        self._deletions = DeletionRoutes(
            deletion, guard=self._guard, read_body=self._body, respond=json_response
        )
        self._orgs = OrgRoutes(
            lifecycle or OrgLifecycleService(store, config),
            store,
            exports.slots,
            guard=self._guard,
            read_body=self._body,
            respond=json_response,
        )
        self._holds = HoldRoutes(
            store,
            operations.hub,
            server_days=config.retention_days,
            guard=self._guard,
            read_body=self._body,
            respond=json_response,
        )
        self._signin = SignInRoutes(
            store,
            signin,
            oidc,
            guard=self._guard,
            open_guard=self._open,
            read_body=self._body,
            respond=json_response,
        )
        # The document depends on the code only: built and encoded once.
        self._openapi = orjson.dumps(
            openapi_document(STATUS, version=importlib.metadata.version("cloison"))
        )

    def routes(self) -> list[Route]:
        """One route per HTTP entry of the operation table, the account routes, and the
        OpenAPI document that describes them all (served without authentication)."""
        routes = [
            Route(
                http.path,
                self._frame_route(
                    op.frame.TYPE,
                    status=http.status,
                    query=http.query,
                    text_query=http.text_query,
                    stream=http.stream,
                ),
                methods=[http.method],
            )
            for op in OPERATIONS
            for http in op.http
        ]
        document = Route(DOCUMENT_PATH, self._openapi_document, methods=["GET"])
        accounts = [
            *self._accounts.routes(),
            *self._deletions.routes(),
            *self._holds.routes(),
            *self._orgs.routes(),
            *self._signin.routes(),
        ]
        return [*routes, *accounts, document]

    async def _openapi_document(self, request: Request) -> Response:
        return Response(self._openapi, 200, API_HEADERS, media_type="application/json")

    # -- plumbing ----------------------------------------------------------------------------

    def _guard(self, handler: Callable[[Request, Principal], Awaitable[Response]]) -> Endpoint:
        """Authenticate, run, and turn every failure into a JSON error."""

        async def endpoint(request: Request) -> Response:
            try:
                principal = await self._principal(request)
                return await handler(request, principal)
            except CloisonError as exc:
                return error_response(exc)
            except Exception:
                logger.exception("HTTP %s %s failed", request.method, request.url.path)
                return error_response(CloisonError("internal error"))

        return endpoint

    def _open(self, handler: Endpoint) -> Endpoint:
        """Run a route that takes no bearer token, every failure a JSON error."""

        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except CloisonError as exc:
                return error_response(exc)
            except Exception:
                logger.exception("HTTP %s %s failed", request.method, request.url.path)
                return error_response(CloisonError("internal error"))

        return endpoint

    async def _principal(self, request: Request) -> Principal:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        principal = None
        if scheme.lower() == "bearer" and token:
            principal = await authenticate(self._store, token.strip(), now_ms=now_ms())
        if principal is None:
            raise CloisonError("a valid bearer token is required", code=ErrorCode.UNAUTHORIZED)
        return principal

    async def _body(self, request: Request) -> dict[str, Any]:
        if request.method in ("GET", "HEAD"):
            return {}
        declared = request.headers.get("content-length")
        if (
            declared is not None
            and declared.isdigit()
            and int(declared) > self._config.max_frame_bytes
        ):
            raise CloisonError("request body too large", code=ErrorCode.TOO_LARGE)
        raw = bytearray()
        try:
            async for chunk in request.stream():
                raw += chunk
                if len(raw) > self._config.max_frame_bytes:
                    raise CloisonError("request body too large", code=ErrorCode.TOO_LARGE)
        except ClientDisconnect:
            # The peer closed before sending the body it announced: nobody reads the answer.
            raise ProtocolViolation("request body ended early") from None
        if not raw.strip():
            return {}
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ProtocolViolation("request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise ProtocolViolation("request body must be a JSON object")
        return data

    def _frame_route(
        self,
        frame_type: str,
        *,
        status: int = 200,
        query: tuple[str, ...] = (),
        text_query: tuple[str, ...] = (),
        stream: bool = False,
    ) -> Endpoint:
        async def handler(request: Request, principal: Principal) -> Response:
            if stream:
                not_head(request)
            data = await self._body(request)
            for key in ("type", "ref", *request.path_params):
                if key in data:
                    raise ProtocolViolation(f"{key}: belongs in the path, not the body")
            for key in query:
                if key in request.query_params:
                    data[key] = _query_value(request.query_params[key], key)
            for key in text_query:
                if key in request.query_params:
                    data[key] = request.query_params[key]
            data.update(_path_values(request.path_params))
            data["type"] = frame_type
            frame = decode_client_map(data)
            reply = await self._ops.handle(Caller(principal.user), frame)
            if stream:
                return await self._stream(principal, reply)
            return _reply(reply, status)

        return self._guard(handler)

    async def _stream(self, principal: Principal, reply: Frame | None) -> Response:
        """The archive a streaming row's reply plans (``Http.stream``)."""
        assert isinstance(reply, ExportInfo), f"no archive for {reply!r}"
        return await self._exports.sphere(principal.user.user_id, reply, now_ms=now_ms())


def _query_value(raw: str, key: str) -> Any:
    if raw in ("true", "false"):
        return raw == "true"
    try:
        return int(raw)
    except ValueError:
        raise ProtocolViolation(f"{key}: expected an integer") from None


def _path_values(params: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = dict(params)
    for key in INTEGER_PATH_PARAMS & values.keys():
        values[key] = _query_value(values[key], key)
    return values


def _reply(reply: Frame | None, status: int) -> Response:
    if reply is None:
        return Response(status_code=204, headers=API_HEADERS)
    payload = to_wire(reply)
    payload.pop("ref", None)
    if payload.get("duplicate"):
        status = 200  # a retried create returns the original result, not a new resource
    return json_response(payload, status)
