"""The account and administration routes of the HTTP API (docs/protocol.md, section 19).

Every route is a thin shell over ``Accounts``: it parses the body and query, calls it, and
answers JSON. Authentication and the mapping of errors to statuses are ``HttpApi``'s.
``ACCOUNT_ROUTES`` lists them once, with what the OpenAPI document says of each (these routes
are not operations of the operation table, so their JSON Schemas are written here by hand).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from protocol import ProtocolViolation, UserId, UserKind
from server.auth import IssuedToken, Principal
from server.operations import now_ms
from server.privacy.export import Exports, not_head
from server.privacy.streaming import ARCHIVE_HEADERS, ARCHIVE_SCHEMA
from server.sessions.accounts import (
    DEFAULT_PAGE,
    MAX_LABEL_CHARS,
    MAX_PAGE,
    MAX_TTL_DAYS,
    Accounts,
    Actor,
    token_json,
    user_json,
    valid_name,
)
from server.sessions.route_table import (
    AccountRoute,
    Endpoint,
    Handler,
    Respond,
    RouteShell,
    Schema,
)
from storage import AuditEntry, TokenKind, TokenPage

# Re-exported: the other tables of account-style routes are written in the same shape.
__all__ = [
    "AccountRoute",
    "AccountRoutes",
    "Endpoint",
    "Handler",
    "Respond",
    "RouteShell",
    "Schema",
]


class AccountRoutes(RouteShell):
    def __init__(
        self,
        accounts: Accounts,
        exports: Exports,
        *,
        guard: Callable[[Handler], Endpoint],
        read_body: Callable[[Request], Awaitable[dict[str, Any]]],
        respond: Respond,
    ) -> None:
        super().__init__(ACCOUNT_ROUTES, guard=guard, read_body=read_body, respond=respond)
        self._accounts = accounts
        self._exports = exports

    # -- the caller's own account ------------------------------------------------------------

    async def _me(self, request: Request, principal: Principal) -> Response:
        return self._respond(user_json(principal.user), 200)

    async def _rename(self, request: Request, principal: Principal) -> Response:
        data = _fields(await self._body(request), required={"name"})
        user = await self._accounts.rename(principal.user.user_id, data["name"])
        return self._respond(user_json(user), 200)

    async def _my_tokens(self, request: Request, principal: Principal) -> Response:
        user_id = principal.user.user_id
        return await self._token_list(request, principal, user_id, principal.token.token_id)

    async def _new_own_token(self, request: Request, principal: Principal) -> Response:
        data = _fields(
            await self._body(request), optional={"kind", "ttl_days", "label", "revoke_current"}
        )
        revoke_current = data.get("revoke_current", False)
        if not isinstance(revoke_current, bool):
            raise ProtocolViolation("revoke_current: expected a boolean")
        issued = await self._accounts.issue_own(
            principal,
            kind=_kind(data.get("kind", TokenKind.SESSION.value)),
            ttl_days=data.get("ttl_days"),
            label=_label(data.get("label")),
            revoke_current=revoke_current,
            now_ms=now_ms(),
        )
        return self._respond(_issued_json(principal.user.user_id, issued), 201)

    async def _close_my_sessions(self, request: Request, principal: Principal) -> Response:
        keep = principal.token.token_id if _bool_query(request, "keep_current") else None
        revoked = await self._accounts.revoke_all(
            Actor.of(principal.user), principal.user.user_id, keep=keep, now_ms=now_ms()
        )
        return self._respond({"revoked": revoked}, 200)

    async def _revoke_own(self, request: Request, principal: Principal) -> Response:
        await self._accounts.revoke(
            Actor.of(principal.user),
            request.path_params["token_id"],
            owner=principal.user.user_id,
            now_ms=now_ms(),
        )
        return self._respond({"revoked": True}, 200)

    async def _export_own(self, request: Request, principal: Principal) -> Response:
        not_head(request)
        return await self._exports.own(principal.user, now_ms=now_ms())

    # -- administration ----------------------------------------------------------------------

    async def _export_user(self, request: Request, principal: Principal) -> Response:
        not_head(request)
        user_id = UserId(request.path_params["user_id"])
        return await self._exports.of_user(principal.user.user_id, user_id, now_ms=now_ms())

    async def _users(self, request: Request, principal: Principal) -> Response:
        limit = _int_query(request, "limit", DEFAULT_PAGE)
        after = request.query_params.get("after")
        users = await self._accounts.users(Actor.of(principal.user), after=after, limit=limit)
        next_after = users[-1].user_id if len(users) == limit else None
        body = {"users": [user_json(u) for u in users], "next_after": next_after}
        return self._respond(body, 200)

    async def _enrol(self, request: Request, principal: Principal) -> Response:
        data = _fields(
            await self._body(request),
            required={"name"},
            optional={"kind", "is_admin", "ttl_days"},
        )
        kind = data.get("kind", UserKind.HUMAN.value)
        if not isinstance(kind, str) or kind not in {k.value for k in UserKind}:
            raise ProtocolViolation("kind: expected human or bot")
        is_admin = data.get("is_admin", False)
        if not isinstance(is_admin, bool):
            raise ProtocolViolation("is_admin: expected a boolean")
        user, issued = await self._accounts.enrol(
            Actor.of(principal.user),
            data["name"],
            UserKind(kind),
            is_admin=is_admin,
            ttl_days=data.get("ttl_days"),
            now_ms=now_ms(),
        )
        body = {**user_json(user), **_issued_json(user.user_id, issued)}
        return self._respond(body, 201)

    async def _user_tokens(self, request: Request, principal: Principal) -> Response:
        user_id = UserId(request.path_params["user_id"])
        return await self._token_list(request, principal, user_id, None)

    async def _close_sessions(self, request: Request, principal: Principal) -> Response:
        revoked = await self._accounts.revoke_all(
            Actor.of(principal.user),
            UserId(request.path_params["user_id"]),
            keep=None,
            now_ms=now_ms(),
        )
        return self._respond({"revoked": revoked}, 200)

    async def _disable(self, request: Request, principal: Principal) -> Response:
        return await self._set_disabled(request, principal, True)

    async def _enable(self, request: Request, principal: Principal) -> Response:
        return await self._set_disabled(request, principal, False)

    async def _set_disabled(
        self, request: Request, principal: Principal, disabled: bool
    ) -> Response:
        user = await self._accounts.set_disabled(
            Actor.of(principal.user),
            UserId(request.path_params["user_id"]),
            disabled,
            now_ms=now_ms(),
        )
        return self._respond(user_json(user), 200)

    async def _issue_for(self, request: Request, principal: Principal) -> Response:
        data = _fields(
            await self._body(request),
            required={"user_id"},
            optional={"kind", "ttl_days", "label"},
        )
        user_id = data["user_id"]
        if not isinstance(user_id, str) or not user_id:
            raise ProtocolViolation("user_id: expected a string")
        kind = data.get("kind")
        issued = await self._accounts.issue_for(
            Actor.of(principal.user),
            UserId(user_id),
            kind=None if kind is None else _kind(kind),
            ttl_days=data.get("ttl_days"),
            label=_label(data.get("label")),
            now_ms=now_ms(),
        )
        return self._respond(_issued_json(UserId(user_id), issued), 201)

    async def _revoke_any(self, request: Request, principal: Principal) -> Response:
        await self._accounts.revoke(
            Actor.of(principal.user), request.path_params["token_id"], owner=None, now_ms=now_ms()
        )
        return self._respond({"revoked": True}, 200)

    async def _audit(self, request: Request, principal: Principal) -> Response:
        limit = _int_query(request, "limit", DEFAULT_PAGE)
        before = _int_query(request, "before", 0) or None
        entries = await self._accounts.audit(Actor.of(principal.user), before=before, limit=limit)
        next_before = entries[-1].seq if len(entries) == limit else None
        body = {"entries": [_audit_json(e) for e in entries], "next_before": next_before}
        return self._respond(body, 200)

    # -- plumbing ----------------------------------------------------------------------------

    async def _token_list(
        self, request: Request, principal: Principal, user_id: UserId, current: str | None
    ) -> Response:
        page = await self._accounts.tokens(
            Actor.of(principal.user),
            user_id,
            cursor=request.query_params.get("cursor"),
            limit=_int_query(request, "limit", DEFAULT_PAGE),
            now_ms=now_ms(),
        )
        return self._respond(_page_json(page, current), 200)


def _fields(
    data: dict[str, Any],
    *,
    required: frozenset[str] | set[str] = frozenset(),
    optional: frozenset[str] | set[str] = frozenset(),
) -> dict[str, Any]:
    missing = required - set(data)
    if missing:
        raise ProtocolViolation(f"{sorted(missing)[0]}: required")
    extra = set(data) - required - optional
    if extra:
        raise ProtocolViolation(f"unexpected field {sorted(extra)[0]!r}")
    return data


def _kind(value: Any) -> TokenKind:
    if not isinstance(value, str) or value not in {k.value for k in TokenKind}:
        raise ProtocolViolation("kind: expected session or api")
    return TokenKind(value)


def _label(value: Any) -> str | None:
    return None if value is None else valid_name(value, "label", MAX_LABEL_CHARS)


def _int_query(request: Request, key: str, default: int) -> int:
    raw = request.query_params.get(key)
    if raw is None:
        return default
    if not raw.isdigit() or len(raw) > 19:
        raise ProtocolViolation(f"{key}: expected a non-negative integer")
    return int(raw)


def _bool_query(request: Request, key: str) -> bool:
    raw = request.query_params.get(key, "false")
    if raw not in ("true", "false"):
        raise ProtocolViolation(f"{key}: expected true or false")
    return raw == "true"


def _issued_json(user_id: UserId, issued: IssuedToken) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "token": issued.token,
        "token_id": issued.token_id,
        "token_kind": issued.kind.value,
        "expires_ms": issued.expires_ms,
    }


def _page_json(page: TokenPage, current: str | None) -> dict[str, Any]:
    cursor = page.next_cursor
    return {
        "tokens": [token_json(t, page, current) for t in page.tokens],
        "next_cursor": f"{cursor[0]}.{cursor[1]}" if cursor is not None else None,
    }


def _audit_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "ts_ms": entry.ts_ms,
        "actor": entry.actor,
        "action": entry.action,
        "user_id": entry.user_id,
        "token_id": entry.token_id,
        "detail": entry.detail,
    }


# ---------------------------------------------------------------------------------------------
# The table of routes, and what the OpenAPI document says of them


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(required: tuple[str, ...], properties: Schema, *, closed: bool = False) -> Schema:
    schema: Schema = {"type": "object", "required": list(required), "properties": properties}
    if closed:  # a request body: other keys are 400 ``bad_frame``
        schema["additionalProperties"] = False
    return schema


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


_TEXT = {"type": "string"}
_MS = {"type": "integer", "minimum": 0}
_NAME = {"type": "string", "minLength": 1, "maxLength": 100}
_LABEL = {"type": "string", "minLength": 1, "maxLength": MAX_LABEL_CHARS}
_TTL = {"type": "integer", "minimum": 0, "maximum": MAX_TTL_DAYS}  # 0: no expiry
_TOKEN_KIND = {"type": "string", "enum": [k.value for k in TokenKind]}
_USER_KIND = {"type": "string", "enum": [k.value for k in UserKind]}
_LIMIT = ("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE})
_CURSOR = ("cursor", _TEXT)

ACCOUNT_SCHEMAS: Mapping[str, Schema] = {
    "User": _object(
        ("user_id", "name", "kind", "is_admin", "disabled"),
        {
            "user_id": _TEXT,
            "name": _TEXT,
            "kind": _USER_KIND,
            "is_admin": {"type": "boolean"},
            "disabled": {"type": "boolean"},
        },
    ),
    "IssuedToken": _object(
        ("user_id", "token", "token_id", "token_kind", "expires_ms"),
        {
            "user_id": _TEXT,
            "token": {"type": "string", "description": "shown only in this reply"},
            "token_id": _TEXT,
            "token_kind": _TOKEN_KIND,
            "expires_ms": _nullable(_MS),
        },
    ),
    "EnrolledUser": {"allOf": [_ref("User"), _ref("IssuedToken")]},
    "Token": _object(
        (
            "token_id",
            "kind",
            "label",
            "created_ms",
            "expires_ms",
            "last_used_ms",
            "issued_by",
            "issued_by_name",
            "current",
        ),
        {
            "token_id": _TEXT,
            "kind": _TOKEN_KIND,
            "label": _nullable(_TEXT),
            "created_ms": _MS,
            "expires_ms": _nullable(_MS),
            "last_used_ms": _nullable(_MS),
            "issued_by": _nullable(_TEXT),
            "issued_by_name": _nullable(_TEXT),
            "current": {"type": "boolean"},
        },
    ),
    "TokenPage": _object(
        ("tokens", "next_cursor"),
        {"tokens": {"type": "array", "items": _ref("Token")}, "next_cursor": _nullable(_TEXT)},
    ),
    "UserPage": _object(
        ("users", "next_after"),
        {"users": {"type": "array", "items": _ref("User")}, "next_after": _nullable(_TEXT)},
    ),
    "RevokedOne": _object(("revoked",), {"revoked": {"const": True}}),
    "RevokedAll": _object(("revoked",), {"revoked": {"type": "array", "items": _TEXT}}),
    "ServerAuditEntry": _object(
        ("seq", "ts_ms", "actor", "action", "user_id", "token_id", "detail"),
        {
            "seq": {"type": "integer"},
            "ts_ms": _MS,
            "actor": _TEXT,
            "action": _TEXT,
            "user_id": _nullable(_TEXT),
            "token_id": _nullable(_TEXT),
            "detail": _nullable(_TEXT),
        },
    ),
    "ServerAuditPage": _object(
        ("entries", "next_before"),
        {
            "entries": {"type": "array", "items": _ref("ServerAuditEntry")},
            "next_before": _nullable({"type": "integer"}),
        },
    ),
}

_R = AccountRoutes
ACCOUNT_ROUTES: tuple[AccountRoute, ...] = (
    AccountRoute("GET", "/me", _R._me, "Your account.", _ref("User")),
    AccountRoute(
        "PATCH",
        "/me",
        _R._rename,
        "Set your display name.",
        _ref("User"),
        body=_object(("name",), {"name": _NAME}, closed=True),
    ),
    AccountRoute(
        "GET",
        "/me/tokens",
        _R._my_tokens,
        "Your live tokens, newest first.",
        _ref("TokenPage"),
        query=(_LIMIT, _CURSOR),
    ),
    AccountRoute(
        "POST",
        "/me/tokens",
        _R._new_own_token,
        "Issue a token of your own (revoke_current: rotate the token of the request).",
        _ref("IssuedToken"),
        status=201,
        body=_object(
            (),
            {
                "kind": {**_TOKEN_KIND, "default": TokenKind.SESSION.value},
                "ttl_days": _TTL,
                "label": _LABEL,
                "revoke_current": {"type": "boolean", "default": False},
            },
            closed=True,
        ),
    ),
    AccountRoute(
        "DELETE",
        "/me/tokens",
        _R._close_my_sessions,
        "Close all your sessions (keep_current: all but the token of the request).",
        _ref("RevokedAll"),
        query=(("keep_current", {"type": "boolean", "default": False}),),
    ),
    AccountRoute(
        "DELETE",
        "/me/tokens/{token_id}",
        _R._revoke_own,
        "Revoke one of your tokens.",
        _ref("RevokedOne"),
    ),
    AccountRoute(
        "GET",
        "/me/export",
        _R._export_own,
        "Download all your data as one zip archive of JSON lines, streamed.",
        ARCHIVE_SCHEMA,
        media_type="application/zip",
        headers=ARCHIVE_HEADERS,
    ),
    AccountRoute(
        "GET",
        "/admin/users",
        _R._users,
        "Users by id.",
        _ref("UserPage"),
        admin=True,
        query=(_LIMIT, ("after", _TEXT)),
    ),
    AccountRoute(
        "POST",
        "/admin/users",
        _R._enrol,
        "Create a user and its first token.",
        _ref("EnrolledUser"),
        status=201,
        admin=True,
        body=_object(
            ("name",),
            {
                "name": _NAME,
                "kind": {**_USER_KIND, "default": UserKind.HUMAN.value},
                "is_admin": {"type": "boolean", "default": False},
                "ttl_days": _TTL,
            },
            closed=True,
        ),
    ),
    AccountRoute(
        "GET",
        "/admin/users/{user_id}/tokens",
        _R._user_tokens,
        "A user's live tokens.",
        _ref("TokenPage"),
        admin=True,
        query=(_LIMIT, _CURSOR),
    ),
    AccountRoute(
        "DELETE",
        "/admin/users/{user_id}/tokens",
        _R._close_sessions,
        "Revoke all of a user's tokens.",
        _ref("RevokedAll"),
        admin=True,
    ),
    AccountRoute(
        "POST",
        "/admin/users/{user_id}/disable",
        _R._disable,
        "Disable a user: their tokens stop working, their connections close.",
        _ref("User"),
        admin=True,
    ),
    AccountRoute(
        "POST",
        "/admin/users/{user_id}/enable",
        _R._enable,
        "Enable a disabled user.",
        _ref("User"),
        admin=True,
    ),
    AccountRoute(
        "GET",
        "/admin/users/{user_id}/export",
        _R._export_user,
        "Download a user's data as one zip archive (an access request), whatever the policy.",
        ARCHIVE_SCHEMA,
        admin=True,
        media_type="application/zip",
        headers=ARCHIVE_HEADERS,
    ),
    AccountRoute(
        "POST",
        "/admin/tokens",
        _R._issue_for,
        "Issue a token for a bot, or for a human who belongs to no sphere yet.",
        _ref("IssuedToken"),
        status=201,
        admin=True,
        body=_object(
            ("user_id",),
            {
                "user_id": {"type": "string", "minLength": 1},
                "kind": _TOKEN_KIND,
                "ttl_days": _TTL,
                "label": _LABEL,
            },
            closed=True,
        ),
    ),
    AccountRoute(
        "DELETE",
        "/admin/tokens/{token_id}",
        _R._revoke_any,
        "Revoke any token.",
        _ref("RevokedOne"),
        admin=True,
    ),
    AccountRoute(
        "GET",
        "/admin/audit",
        _R._audit,
        "The server's audit log, newest first.",
        _ref("ServerAuditPage"),
        admin=True,
        query=(_LIMIT, ("before", {"type": "integer", "minimum": 0})),
    ),
)
