"""The sign-in routes of the HTTP API (docs/protocol.md, "Signing in").

``SIGNIN_ROUTES`` lists them once, with what the OpenAPI document says of each. The rows
marked ``public`` take no bearer token (signing in is how one gets one); the others are
account and administration routes like ``server.sessions.routes``'.

No token ever travels in a URL: the single sign-on callback hands the browser a one-time code
in an ``HttpOnly; SameSite=Strict`` cookie scoped to ``/api/v1/auth/session``, and the page
exchanges it there for the tokens, in a JSON body.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from protocol import CloisonError, ErrorCode, OrgId, ProtocolViolation, UserId
from server.auth import Principal
from server.operations import now_ms
from server.sessions.route_table import AccountRoute, Endpoint, Handler, Respond, RouteShell, Schema
from server.signin.emails import valid_email
from server.signin.oidc import CODE_TTL_MS, Oidc
from server.signin.service import SignIn
from storage import AuthSession, EndReason, SsoConfig, Store, policies_from

logger = logging.getLogger(__name__)

COOKIE = "cloison_signin"
COOKIE_PATH = "/api/v1/auth/session"
MAX_URL_CHARS = 2000
OpenHandler = Callable[[Request], Awaitable[Response]]
PublicHandler = Callable[[Any, Request, None], Awaitable[Response]]


class SignInRoutes(RouteShell):
    def __init__(
        self,
        store: Store,
        signin: SignIn,
        oidc: Oidc,
        *,
        guard: Callable[[Handler], Endpoint],
        open_guard: Callable[[OpenHandler], Endpoint],
        read_body: Callable[[Request], Awaitable[dict[str, Any]]],
        respond: Respond,
    ) -> None:
        super().__init__(SIGNIN_ROUTES, guard=guard, read_body=read_body, respond=respond)
        self._store = store
        self._signin = signin
        self._oidc = oidc
        self._open_guard = open_guard

    def routes(self) -> list[Route]:
        shells = super().routes()
        routes = []
        for route, shell in zip(SIGNIN_ROUTES, shells, strict=True):
            if route.public:
                shell = Route(route.path, self._public(route), methods=[route.method])
            routes.append(shell)
        return routes

    def _public(self, route: AccountRoute) -> Endpoint:
        # The handlers of public rows take None for the principal there is not.
        handler = cast(PublicHandler, route.handler)

        async def run(request: Request) -> Response:
            return await handler(self, request, None)

        return self._open_guard(run)

    # -- signing in (no bearer token) --------------------------------------------------------

    async def _password(self, request: Request, principal: Principal | None) -> Response:
        data = _fields(await self._body(request), required={"email", "password"})
        tokens = await self._signin.password(
            data["email"], data["password"], now_ms=now_ms(), **_client(request)
        )
        return self._respond(tokens.json(), 200)

    async def _register(self, request: Request, principal: Principal | None) -> Response:
        data = _fields(await self._body(request), required={"email", "name", "password"})
        tokens = await self._signin.register(
            data["email"], data["name"], data["password"], now_ms=now_ms(), **_client(request)
        )
        return self._respond(tokens.json(), 201)

    async def _refresh(self, request: Request, principal: Principal | None) -> Response:
        data = _fields(await self._body(request), required={"refresh_token"})
        tokens = await self._signin.sessions.refresh(data["refresh_token"], now_ms=now_ms())
        return self._respond(tokens.json(), 200)

    async def _providers(self, request: Request, principal: Principal | None) -> Response:
        orgs = await self._store.sso_orgs()
        body = {"providers": [{"org_id": org_id, "name": name} for org_id, name in orgs]}
        return self._respond(body, 200)

    async def _oidc_start(self, request: Request, principal: Principal | None) -> Response:
        url = await self._oidc.start(OrgId(request.path_params["org_id"]), now_ms=now_ms())
        return RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})

    async def _oidc_callback(self, request: Request, principal: Principal | None) -> Response:
        """Always a redirect to the page: with the cookie, or with the reason in the fragment
        (never a token)."""
        params = request.query_params
        if "error" in params:
            return _back_to_page("provider_refused")
        try:
            code = await self._oidc.callback(
                params.get("code"), params.get("state"), now_ms=now_ms()
            )
        except CloisonError as exc:
            logger.info("single sign-on refused: %s", exc.message)
            return _back_to_page(exc.code.value)
        response = _back_to_page(None)
        response.set_cookie(
            COOKIE,
            code,
            max_age=CODE_TTL_MS // 1000,
            path=COOKIE_PATH,
            secure=self._oidc.secure_cookie,
            httponly=True,
            samesite="strict",
        )
        return response

    async def _session(self, request: Request, principal: Principal | None) -> Response:
        tokens = await self._oidc.exchange(
            request.cookies.get(COOKIE), now_ms=now_ms(), **_client(request)
        )
        response = self._respond(tokens.json(), 200)
        response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")
        return response

    # -- the caller's account ----------------------------------------------------------------

    async def _set_password(self, request: Request, principal: Principal) -> Response:
        data = _fields(
            await self._body(request), required={"password"}, optional={"current_password"}
        )
        ended = await self._signin.set_own_password(
            principal, data["password"], data.get("current_password"), now_ms=now_ms()
        )
        return self._respond({"password_set": True, "sessions_ended": len(ended)}, 200)

    async def _sessions(self, request: Request, principal: Principal) -> Response:
        sessions = await self._signin.sessions.of_user(principal.user.user_id, now_ms=now_ms())
        current = principal.token.session_id
        return self._respond({"sessions": [_session_json(s, current) for s in sessions]}, 200)

    async def _end_session(self, request: Request, principal: Principal) -> Response:
        await self._signin.sessions.revoke(
            principal.user.user_id,
            request.path_params["session_id"],
            why=EndReason.SIGNED_OUT,
            now_ms=now_ms(),
        )
        return self._respond({"revoked": True}, 200)

    # -- administration ----------------------------------------------------------------------

    async def _set_email(self, request: Request, principal: Principal) -> Response:
        data = _fields(await self._body(request), required={"email"})
        user_id = UserId(request.path_params["user_id"])
        await self._signin.enrol(
            principal.user.user_id, user_id, data["email"], None, now_ms=now_ms()
        )
        return self._respond({"user_id": user_id, "email": valid_email(data["email"])}, 200)

    async def _get_sso(self, request: Request, principal: Principal) -> Response:
        config = await self._store.get_sso(OrgId(request.path_params["org_id"]))
        if config is None:
            raise CloisonError("this organisation has no single sign-on", code=ErrorCode.NOT_FOUND)
        return self._respond(sso_json(config), 200)

    async def _put_sso(self, request: Request, principal: Principal) -> Response:
        data = _fields(
            await self._body(request),
            required={"issuer", "client_id", "client_secret"},
            optional={"email_domains", "provision"},
        )
        config = sso_config(OrgId(request.path_params["org_id"]), data, now_ms=now_ms())
        await self._store.set_sso(config, actor_id=principal.user.user_id)
        return self._respond(sso_json(config), 200)

    async def _delete_sso(self, request: Request, principal: Principal) -> Response:
        org_id = OrgId(request.path_params["org_id"])
        if not await self._store.delete_sso(
            org_id, now_ms=now_ms(), actor_id=principal.user.user_id
        ):
            raise CloisonError("this organisation has no single sign-on", code=ErrorCode.NOT_FOUND)
        return self._respond({"removed": True}, 200)


def sso_config(org_id: OrgId, data: Mapping[str, Any], *, now_ms: int) -> SsoConfig:
    """A validated single sign-on configuration from a request body or the command line.

    Raises:
        ProtocolViolation: a field of the wrong kind.
    """
    issuer = data["issuer"]
    if (
        not isinstance(issuer, str)
        or not issuer.startswith(("https://", "http://"))
        or len(issuer) > MAX_URL_CHARS
    ):
        raise ProtocolViolation("issuer: expected the provider's http(s) issuer URL")
    for key in ("client_id", "client_secret"):
        value = data[key]
        if not isinstance(value, str) or not 0 < len(value) <= 1000:
            raise ProtocolViolation(f"{key}: expected a non-empty string")
    provision = data.get("provision", False)
    if not isinstance(provision, bool):
        raise ProtocolViolation("provision: expected a boolean")
    try:
        domains = policies_from({"email_domains": data.get("email_domains", [])}).email_domains
    except CloisonError as exc:
        raise ProtocolViolation(exc.message) from None
    return SsoConfig(
        org_id, issuer, data["client_id"], data["client_secret"], domains, provision, now_ms
    )


def sso_json(config: SsoConfig) -> dict[str, Any]:
    """The configuration as shown: never the client secret."""
    return {
        "org_id": config.org_id,
        "issuer": config.issuer,
        "client_id": config.client_id,
        "email_domains": list(config.email_domains),
        "provision": config.provision,
        "updated_ms": config.updated_ms,
    }


def _session_json(session: AuthSession, current: str | None) -> dict[str, Any]:
    return {
        "session_id": session.session_id,
        "method": session.method.value,
        "device": session.device,
        "address": session.address,
        "created_ms": session.created_ms,
        "last_used_ms": session.last_used_ms,
        "expires_ms": session.expires_ms,
        "current": session.session_id == current,
    }


def _client(request: Request) -> dict[str, str | None]:
    return {
        "device": request.headers.get("user-agent"),
        "address": request.client.host if request.client is not None else None,
    }


def _back_to_page(error: str | None) -> RedirectResponse:
    location = "/" if error is None else f"/#signin_error={error}"
    return RedirectResponse(location, status_code=302, headers={"Cache-Control": "no-store"})


def _fields(
    data: dict[str, Any], *, required: set[str], optional: frozenset[str] | set[str] = frozenset()
) -> dict[str, Any]:
    missing = required - set(data)
    if missing:
        raise ProtocolViolation(f"{sorted(missing)[0]}: required")
    extra = set(data) - required - optional
    if extra:
        raise ProtocolViolation(f"unexpected field {sorted(extra)[0]!r}")
    return data


# ---------------------------------------------------------------------------------------------
# The table of routes, and what the OpenAPI document says of them


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(required: tuple[str, ...], properties: Schema, *, closed: bool = False) -> Schema:
    schema: Schema = {"type": "object", "required": list(required), "properties": properties}
    if closed:
        schema["additionalProperties"] = False
    return schema


_TEXT = {"type": "string"}
_MS = {"type": "integer", "minimum": 0}
_EMAIL = {"type": "string", "format": "email", "maxLength": 254}
_PASSWORD = {"type": "string", "minLength": 8, "maxLength": 256}
_NULLABLE_TEXT = {"anyOf": [_TEXT, {"type": "null"}]}
_REDIRECT: Schema = {"type": "string", "description": "a redirect (302): see Location"}

SIGNIN_SCHEMAS: Mapping[str, Schema] = {
    "SessionTokens": _object(
        (
            "session_id",
            "user_id",
            "access_token",
            "refresh_token",
            "access_expires_ms",
            "refresh_expires_ms",
        ),
        {
            "session_id": _TEXT,
            "user_id": _TEXT,
            "access_token": {"type": "string", "description": "a bearer token (kind access)"},
            "refresh_token": {"type": "string", "description": "for POST /auth/refresh, once"},
            "access_expires_ms": _MS,
            "refresh_expires_ms": {**_MS, "description": "when the session ends"},
        },
    ),
    "SignInSession": _object(
        (
            "session_id",
            "method",
            "device",
            "address",
            "created_ms",
            "last_used_ms",
            "expires_ms",
            "current",
        ),
        {
            "session_id": _TEXT,
            "method": {"type": "string", "enum": ["password", "oidc"]},
            "device": _NULLABLE_TEXT,
            "address": {**_NULLABLE_TEXT, "description": "the network, truncated (/24, /48)"},
            "created_ms": _MS,
            "last_used_ms": _MS,
            "expires_ms": _MS,
            "current": {"type": "boolean"},
        },
    ),
    "SignInSessions": _object(
        ("sessions",), {"sessions": {"type": "array", "items": _ref("SignInSession")}}
    ),
    "SsoProviders": _object(
        ("providers",),
        {
            "providers": {
                "type": "array",
                "items": _object(("org_id", "name"), {"org_id": _TEXT, "name": _TEXT}),
            }
        },
    ),
    "SsoConfig": _object(
        ("org_id", "issuer", "client_id", "email_domains", "provision", "updated_ms"),
        {
            "org_id": _TEXT,
            "issuer": _TEXT,
            "client_id": _TEXT,
            "email_domains": {"type": "array", "items": _TEXT},
            "provision": {"type": "boolean"},
            "updated_ms": _MS,
        },
    ),
}

_R = SignInRoutes
SIGNIN_ROUTES: tuple[AccountRoute, ...] = (
    AccountRoute(
        "POST",
        "/auth/password",
        _R._password,
        "Sign in with an e-mail and a password: a new session.",
        _ref("SessionTokens"),
        public=True,
        body=_object(("email", "password"), {"email": _TEXT, "password": _TEXT}, closed=True),
    ),
    AccountRoute(
        "POST",
        "/auth/register",
        _R._register,
        "Create an account, for an e-mail domain an organisation opens to self-registration.",
        _ref("SessionTokens"),
        status=201,
        public=True,
        body=_object(
            ("email", "name", "password"),
            {"email": _EMAIL, "name": {"type": "string", "minLength": 1}, "password": _PASSWORD},
            closed=True,
        ),
    ),
    AccountRoute(
        "POST",
        "/auth/refresh",
        _R._refresh,
        "Exchange a refresh token for a new pair; the old one is used up (reuse ends the session).",
        _ref("SessionTokens"),
        public=True,
        body=_object(("refresh_token",), {"refresh_token": _TEXT}, closed=True),
    ),
    AccountRoute(
        "GET",
        "/auth/providers",
        _R._providers,
        "The organisations that sign in with single sign-on.",
        _ref("SsoProviders"),
        public=True,
    ),
    AccountRoute(
        "GET",
        "/auth/oidc/{org_id}/start",
        _R._oidc_start,
        "Start single sign-on: a redirect to the organisation's OpenID Connect provider.",
        _REDIRECT,
        status=302,
        public=True,
        media_type="text/plain",
    ),
    AccountRoute(
        "GET",
        "/auth/oidc/callback",
        _R._oidc_callback,
        "Where the provider sends the browser back: a redirect to the page, with a one-time "
        "sign-in code in an HttpOnly cookie (or #signin_error=<code>).",
        _REDIRECT,
        status=302,
        public=True,
        media_type="text/plain",
        query=(("code", _TEXT), ("state", _TEXT)),
    ),
    AccountRoute(
        "POST",
        "/auth/session",
        _R._session,
        "Exchange the one-time sign-in code of the cookie for the session's tokens, once.",
        _ref("SessionTokens"),
        public=True,
    ),
    AccountRoute(
        "PUT",
        "/me/password",
        _R._set_password,
        "Set your password (current_password required when one is set); ends your other sessions.",
        _object(
            ("password_set", "sessions_ended"),
            {"password_set": {"const": True}, "sessions_ended": {"type": "integer"}},
        ),
        body=_object(
            ("password",), {"password": _PASSWORD, "current_password": _TEXT}, closed=True
        ),
    ),
    AccountRoute(
        "GET",
        "/me/sessions",
        _R._sessions,
        "Your sign-in sessions, newest first.",
        _ref("SignInSessions"),
    ),
    AccountRoute(
        "DELETE",
        "/me/sessions/{session_id}",
        _R._end_session,
        "End one of your sessions (your current one: sign out); its sockets close.",
        _object(("revoked",), {"revoked": {"const": True}}),
    ),
    AccountRoute(
        "PUT",
        "/admin/users/{user_id}/email",
        _R._set_email,
        "Set a user's login e-mail (for enrolment: they then set a password with their token).",
        _object(("user_id", "email"), {"user_id": _TEXT, "email": _TEXT}),
        admin=True,
        body=_object(("email",), {"email": _EMAIL}, closed=True),
    ),
    AccountRoute(
        "GET",
        "/admin/orgs/{org_id}/sso",
        _R._get_sso,
        "An organisation's single sign-on (never its client secret).",
        _ref("SsoConfig"),
        admin=True,
    ),
    AccountRoute(
        "PUT",
        "/admin/orgs/{org_id}/sso",
        _R._put_sso,
        "Set an organisation's single sign-on over OpenID Connect.",
        _ref("SsoConfig"),
        admin=True,
        body=_object(
            ("issuer", "client_id", "client_secret"),
            {
                "issuer": _TEXT,
                "client_id": _TEXT,
                "client_secret": _TEXT,
                "email_domains": {"type": "array", "items": _TEXT},
                "provision": {"type": "boolean", "default": False},
            },
            closed=True,
        ),
    ),
    AccountRoute(
        "DELETE",
        "/admin/orgs/{org_id}/sso",
        _R._delete_sso,
        "Remove an organisation's single sign-on (its members' identities stay linked).",
        _object(("removed",), {"removed": {"const": True}}),
        admin=True,
    ),
)
