"""The JSON HTTP API for bots and admin tools, beside the WebSocket on the same port.

Each sphere route builds the same client frame a WebSocket client would send (path, query
and JSON body merged into one map) and validates it with the protocol's own rules, so both
transports share every check and every error code. Errors are JSON
``{"code", "message", "retryable"}`` with an HTTP status derived from the code.
"""

from __future__ import annotations

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
    Frame,
    ProtocolViolation,
    RateLimitedError,
    UserId,
    UserKind,
    decode_client_map,
    to_wire,
)
from server.auth import authenticate, issue_token
from server.config import Config
from server.operations import Caller, Operations, now_ms
from storage import Store, UserRecord

logger = logging.getLogger(__name__)

STATUS = {
    ErrorCode.BAD_FRAME: 400,
    ErrorCode.UNSUPPORTED_VERSION: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.UNRECOVERABLE_POSITION: 409,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.UNKNOWN: 503,
    ErrorCode.INTERNAL: 500,
}
_MAX_NAME_CHARS = 100
_DAY_MS = 86_400_000


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
        *,
        on_revoke: Callable[[str], object],
    ) -> None:
        self._config = config
        self._store = store
        self._ops = operations
        self._on_revoke = on_revoke  # closes live connections opened with a revoked token

    def routes(self) -> list[Route]:
        frame = self._frame_route
        return [
            Route("/me", self._guard(self._me), methods=["GET"]),
            Route(
                "/spheres",
                frame("list_spheres", query=("discover", "limit"), text_query=("after",)),
                methods=["GET"],
            ),
            Route("/spheres", frame("create_sphere", status=201), methods=["POST"]),
            Route("/spheres/{sphere_id}", frame("update_sphere"), methods=["PATCH"]),
            Route("/spheres/{sphere_id}/join", frame("join"), methods=["POST"]),
            Route("/spheres/{sphere_id}/leave", frame("leave"), methods=["POST"]),
            Route("/spheres/{sphere_id}/read", frame("mark_read"), methods=["POST"]),
            Route(
                "/spheres/{sphere_id}/members",
                frame("list_members", query=("limit",), text_query=("after",)),
                methods=["GET"],
            ),
            Route("/spheres/{sphere_id}/members", frame("add_member"), methods=["POST"]),
            Route(
                "/spheres/{sphere_id}/members/{user_id}",
                frame("set_role"),
                methods=["PUT"],
            ),
            Route(
                "/spheres/{sphere_id}/members/{user_id}",
                frame("remove_member"),
                methods=["DELETE"],
            ),
            Route(
                "/spheres/{sphere_id}/messages",
                frame("history", query=("before", "after", "limit")),
                methods=["GET"],
            ),
            Route(
                "/spheres/{sphere_id}/messages",
                frame("publish", status=201),
                methods=["POST"],
            ),
            Route("/spheres/{sphere_id}/messages/{target}", frame("edit"), methods=["PUT"]),
            Route(
                "/spheres/{sphere_id}/messages/{target}",
                frame("delete"),
                methods=["DELETE"],
            ),
            Route("/admin/users", self._guard(self._create_user), methods=["POST"]),
            Route("/admin/tokens", self._guard(self._create_token), methods=["POST"]),
            Route(
                "/admin/tokens/{token_id}",
                self._guard(self._revoke_token),
                methods=["DELETE"],
            ),
        ]

    # -- plumbing ----------------------------------------------------------------------------

    def _guard(self, handler: Callable[[Request, UserRecord], Awaitable[Response]]) -> Endpoint:
        """Authenticate, run, and turn every failure into a JSON error."""

        async def endpoint(request: Request) -> Response:
            try:
                user = await self._user(request)
                return await handler(request, user)
            except CloisonError as exc:
                return error_response(exc)
            except Exception:
                logger.exception("HTTP %s %s failed", request.method, request.url.path)
                return error_response(CloisonError("internal error"))

        return endpoint

    async def _user(self, request: Request) -> UserRecord:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        user = None
        if scheme.lower() == "bearer" and token:
            user = await authenticate(self._store, token.strip(), now_ms=now_ms())
        if user is None:
            raise CloisonError("a valid bearer token is required", code=ErrorCode.UNAUTHORIZED)
        return user

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
    ) -> Endpoint:
        async def handler(request: Request, user: UserRecord) -> Response:
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
            reply = await self._ops.handle(Caller(user), frame)
            return _reply(reply, status)

        return self._guard(handler)

    # -- account and admin routes ------------------------------------------------------------

    async def _me(self, request: Request, user: UserRecord) -> Response:
        return json_response(_user_json(user))

    def _require_admin(self, user: UserRecord) -> None:
        if not user.is_admin:
            raise CloisonError("server administrators only", code=ErrorCode.FORBIDDEN)

    async def _create_user(self, request: Request, user: UserRecord) -> Response:
        self._require_admin(user)
        data = await self._body(request)
        name = data.get("name")
        kind = data.get("kind", UserKind.HUMAN.value)
        is_admin = data.get("is_admin", False)
        if not isinstance(name, str) or not 0 < len(name) <= _MAX_NAME_CHARS:
            raise ProtocolViolation(f"name: a string of 1 to {_MAX_NAME_CHARS} characters")
        if not isinstance(kind, str) or kind not in {k.value for k in UserKind}:
            raise ProtocolViolation("kind: expected human or bot")
        if not isinstance(is_admin, bool):
            raise ProtocolViolation("is_admin: expected a boolean")
        extra = set(data) - {"name", "kind", "is_admin", "ttl_days"}
        if extra:
            raise ProtocolViolation(f"unexpected field {sorted(extra)[0]!r}")
        ttl_ms = self._ttl_ms(data)
        created = await self._store.create_user(
            name, UserKind(kind), is_admin=is_admin, now_ms=now_ms()
        )
        issued = await issue_token(self._store, created.user_id, now_ms=now_ms(), ttl_ms=ttl_ms)
        body = {**_user_json(created), "token": issued.token, "token_id": issued.token_id}
        return json_response(body, 201)

    async def _create_token(self, request: Request, user: UserRecord) -> Response:
        self._require_admin(user)
        data = await self._body(request)
        user_id = data.get("user_id")
        if not isinstance(user_id, str) or not user_id:
            raise ProtocolViolation("user_id: expected a string")
        if await self._store.get_user(UserId(user_id)) is None:
            raise CloisonError("user not found", code=ErrorCode.NOT_FOUND)
        issued = await issue_token(
            self._store, UserId(user_id), now_ms=now_ms(), ttl_ms=self._ttl_ms(data)
        )
        body = {
            "user_id": user_id,
            "token": issued.token,
            "token_id": issued.token_id,
            "expires_ms": issued.expires_ms,
        }
        return json_response(body, 201)

    async def _revoke_token(self, request: Request, user: UserRecord) -> Response:
        self._require_admin(user)
        token_id = request.path_params["token_id"]
        if not await self._store.revoke_token(token_id):
            raise CloisonError("token not found", code=ErrorCode.NOT_FOUND)
        self._on_revoke(token_id)
        return json_response({"revoked": True})

    def _ttl_ms(self, data: dict[str, Any]) -> int | None:
        days = data.get("ttl_days", self._config.token_ttl_days)
        if not isinstance(days, int) or isinstance(days, bool) or not 0 <= days <= 3650:
            raise ProtocolViolation("ttl_days: an integer from 0 (no expiry) to 3650")
        return days * _DAY_MS if days else None


def _user_json(user: UserRecord) -> dict[str, Any]:
    return {
        "user_id": user.user_id,
        "name": user.name,
        "kind": user.kind.value,
        "is_admin": user.is_admin,
    }


def _query_value(raw: str, key: str) -> Any:
    if raw in ("true", "false"):
        return raw == "true"
    try:
        return int(raw)
    except ValueError:
        raise ProtocolViolation(f"{key}: expected an integer") from None


def _path_values(params: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = dict(params)
    if "target" in values:
        values["target"] = _query_value(values["target"], "target")
    return values


def _reply(reply: Frame | None, status: int) -> Response:
    if reply is None:
        return Response(status_code=204, headers=API_HEADERS)
    payload = to_wire(reply)
    payload.pop("ref", None)
    if payload.get("duplicate"):
        status = 200  # a retried create returns the original result, not a new resource
    return json_response(payload, status)
