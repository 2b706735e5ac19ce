"""Single sign-on per organisation over OpenID Connect: ``Oidc``.

The flow (docs/security.md, "Single sign-on"):

1. ``start``: a fresh ``state``, ``nonce`` and PKCE verifier, kept server-side (the store's
   ``signin_grants``, by digest, ``STATE_TTL_MS``), then the provider's authorization URL
   (authorization code, S256 challenge). Any gateway can serve the callback.
2. ``callback``: the state is taken (once); the code is exchanged at the provider's token
   endpoint with the client secret and the verifier (authlib, over httpx); the ID token is
   checked: signature by a key of the provider's JWKS, ``iss``, ``aud`` (and ``azp``),
   ``exp``/``iat``, ``nonce``. (organisation, ``sub``) names the user (``sso_identities``); on
   a first sign-in, a verified e-mail of an allowed domain links the organisation's member who
   has it, or, when the organisation provisions, creates one. The answer is a one-time sign-in
   code (``CODE_TTL_MS``), which the route sets in an HttpOnly cookie: no token in any URL.
3. ``exchange``: the code, presented once from that cookie, opens the session.

Discovery documents and key sets are cached per issuer for ``DISCOVERY_TTL_S``; a signature
by a key the cache lacks refetches the key set once (key rotation).
"""

from __future__ import annotations

import hashlib
import secrets
import time
import warnings
from dataclasses import dataclass
from typing import Any

import authlib.deprecate  # noqa: F401  (installs its own filter; ours must come after)
import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from protocol import CloisonError, ErrorCode, OrgId, UserId
from server.auth import active_user
from server.signin.emails import email_domain, email_key
from server.signin.sessions import Sessions, SessionTokens
from storage import (
    GrantKind,
    NotFoundError,
    SigninGrant,
    SignInMethod,
    SsoConfig,
    Store,
)

with warnings.catch_warnings():
    # authlib announces a move to "httpx2"; httpx is what this project uses and supports.
    warnings.simplefilter("ignore", DeprecationWarning)
    from authlib.common.errors import AuthlibBaseError
    from authlib.integrations.httpx_client import AsyncOAuth2Client

CALLBACK_PATH = "/api/v1/auth/oidc/callback"
STATE_TTL_MS = 600_000  # the time a person has at the provider's login page
CODE_TTL_MS = 60_000  # from the callback's redirect to the page's exchange
DISCOVERY_TTL_S = 300.0
HTTP_TIMEOUT_S = 10.0
# Why: the algorithms providers sign ID tokens with; "none" and HMAC with the secret are not.
ID_TOKEN_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA")
LEEWAY_S = 60
MAX_NAME_CHARS = 100


def grant_id(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(slots=True)
class _Provider:
    metadata: dict[str, Any]
    keys: KeySet
    fetched_s: float


class SignInRefused(CloisonError):
    """The provider's answer does not sign anyone in (the reason is for the logs)."""

    code = ErrorCode.UNAUTHORIZED


class Oidc:
    def __init__(self, store: Store, sessions: Sessions, *, public_url: str) -> None:
        self._store = store
        self._sessions = sessions
        self._redirect_uri = public_url.rstrip("/") + CALLBACK_PATH if public_url else ""
        self._providers: dict[str, _Provider] = {}
        self._http = httpx.AsyncClient(timeout=HTTP_TIMEOUT_S, follow_redirects=False)

    @property
    def secure_cookie(self) -> bool:
        return self._redirect_uri.startswith("https:")

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- the flow ----------------------------------------------------------------------------

    async def start(self, org_id: OrgId, *, now_ms: int) -> str:
        """The provider URL to send the browser to.

        Raises:
            CloisonError: not_found (no such organisation, or no single sign-on),
                unavailable (the provider does not answer, or no --public-url).
        """
        config = await self._config(org_id)
        if not self._redirect_uri:
            raise CloisonError(
                "single sign-on needs the server's --public-url", code=ErrorCode.UNAVAILABLE
            )
        provider = await self._provider(config.issuer)
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(48)
        await self._store.put_grant(
            SigninGrant(
                grant_id(state),
                GrantKind.OIDC_STATE,
                now_ms + STATE_TTL_MS,
                org_id=org_id,
                nonce=nonce,
                verifier=verifier,
            ),
            now_ms=now_ms,
        )
        async with self._client(config) as client:
            url, _ = client.create_authorization_url(
                provider.metadata["authorization_endpoint"],
                state=state,
                code_verifier=verifier,
                nonce=nonce,
            )
        return str(url)

    async def callback(self, code: str | None, state: str | None, *, now_ms: int) -> str:
        """A one-time sign-in code for the person the provider vouches for.

        Raises:
            SignInRefused: unknown or expired state, a refused code, an ID token that fails a
                check, no account and no provisioning.
            CloisonError: forbidden (the organisation refuses this person), unavailable.
        """
        if not code or not state:
            raise SignInRefused("the provider's answer lacks a code or a state")
        grant = await self._store.take_grant(grant_id(state), GrantKind.OIDC_STATE, now_ms=now_ms)
        if grant is None or grant.org_id is None or grant.nonce is None:
            raise SignInRefused("unknown, used or expired sign-in state")
        config = await self._config(grant.org_id)
        provider = await self._provider(config.issuer)
        async with self._client(config) as client:
            try:
                token = await client.fetch_token(
                    provider.metadata["token_endpoint"],
                    code=code,
                    code_verifier=grant.verifier,
                )
            except (httpx.HTTPError, ValueError, AuthlibBaseError) as exc:
                raise SignInRefused(f"the provider refused the code ({exc})") from None
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise SignInRefused("the provider returned no ID token")
        claims = await self.verify_id_token(config, id_token, grant.nonce, now_s=now_ms // 1000)
        if "email" not in claims:
            claims |= await self._userinfo(provider, token, str(claims["sub"]))
        user_id = await self._user(config, claims, now_ms=now_ms)
        signin_code = secrets.token_urlsafe(32)
        await self._store.put_grant(
            SigninGrant(
                grant_id(signin_code),
                GrantKind.SIGNIN_CODE,
                now_ms + CODE_TTL_MS,
                org_id=config.org_id,
                user_id=user_id,
            ),
            now_ms=now_ms,
        )
        return signin_code

    async def exchange(
        self, signin_code: str | None, *, device: str | None, address: str | None, now_ms: int
    ) -> SessionTokens:
        """The session of a one-time sign-in code (taken: a second exchange fails).

        Raises:
            CloisonError: unauthorized.
        """
        grant = None
        if signin_code:
            grant = await self._store.take_grant(
                grant_id(signin_code), GrantKind.SIGNIN_CODE, now_ms=now_ms
            )
        user = None
        if grant is not None and grant.user_id is not None:
            user = await active_user(self._store, grant.user_id)
        if user is None:
            raise CloisonError("no sign-in to complete: sign in again", code=ErrorCode.UNAUTHORIZED)
        return await self._sessions.open(
            user, SignInMethod.OIDC, device=device, address=address, now_ms=now_ms
        )

    async def _userinfo(
        self, provider: _Provider, token: dict[str, Any], subject: str
    ) -> dict[str, Any]:
        """The e-mail and name claims from the userinfo endpoint: providers put them there,
        not in the ID token, when an access token is issued too (OpenID Connect Core 5.4)."""
        endpoint = provider.metadata.get("userinfo_endpoint")
        access = token.get("access_token")
        if not isinstance(endpoint, str) or not isinstance(access, str):
            return {}
        try:
            reply = await self._http.get(endpoint, headers={"Authorization": f"Bearer {access}"})
            reply.raise_for_status()
            info = reply.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise SignInRefused(f"the provider's userinfo cannot be read ({exc})") from None
        if not isinstance(info, dict) or info.get("sub") != subject:
            # Core 5.3.2: the userinfo of another subject must not be used.
            raise SignInRefused("the provider's userinfo is about another subject")
        return {k: info[k] for k in ("email", "email_verified", "name") if k in info}

    # -- the ID token ------------------------------------------------------------------------

    async def verify_id_token(
        self, config: SsoConfig, id_token: str, nonce: str, *, now_s: int | None = None
    ) -> dict[str, Any]:
        """The claims of an ID token that passes every check.

        Raises:
            SignInRefused: a bad signature, issuer, audience, authorised party, nonce or time.
        """
        provider = await self._provider(config.issuer)
        try:
            decoded = self._decode(id_token, provider.keys)
        except JoseError:
            # Perhaps signed by a key published since the cache was filled: refetch once.
            provider = await self._provider(config.issuer, fresh=True)
            try:
                decoded = self._decode(id_token, provider.keys)
            except (JoseError, ValueError) as exc:
                raise SignInRefused(f"the ID token's signature does not verify ({exc})") from None
        except ValueError as exc:
            raise SignInRefused(f"the ID token is malformed ({exc})") from None
        claims = dict(decoded.claims)
        registry = jwt.JWTClaimsRegistry(
            now=now_s if now_s is not None else int(time.time()),
            leeway=LEEWAY_S,
            iss={"essential": True, "value": config.issuer},
            aud={"essential": True, "value": config.client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise SignInRefused(f"the ID token fails a check ({exc})") from None
        audience = claims["aud"]
        if (
            isinstance(audience, list)
            and len(audience) > 1
            and claims.get("azp") != config.client_id
        ):
            raise SignInRefused("the ID token was issued to another party (azp)")
        return claims

    @staticmethod
    def _decode(id_token: str, keys: KeySet) -> jwt.Token:
        return jwt.decode(id_token, keys, algorithms=list(ID_TOKEN_ALGORITHMS))

    # -- who it is ---------------------------------------------------------------------------

    async def _user(self, config: SsoConfig, claims: dict[str, Any], *, now_ms: int) -> UserId:
        org = await self._store.get_org(config.org_id)
        if org is None or org.suspended:
            raise CloisonError("this organisation is suspended", code=ErrorCode.FORBIDDEN)
        subject = str(claims["sub"])
        known = await self._store.sso_user(config.org_id, subject)
        if known is not None:
            if await self._store.org_role(config.org_id, known) is None:
                raise CloisonError(
                    "you are no longer a member of this organisation", code=ErrorCode.FORBIDDEN
                )
            return known
        email = claims.get("email")
        if not isinstance(email, str) or claims.get("email_verified") is not True:
            raise CloisonError(
                "the provider vouches for no verified e-mail: no account to sign in to",
                code=ErrorCode.FORBIDDEN,
            )
        if config.email_domains and email_domain(email) not in config.email_domains:
            raise CloisonError(
                "this e-mail domain may not sign in to this organisation (policy email_domains)",
                code=ErrorCode.FORBIDDEN,
            )
        existing = await self._store.credentials_by_email(email_key(email))
        if existing is not None:
            # The organisation's provider vouches for the address of one of its members: the
            # same person. Someone outside the organisation is never linked by e-mail.
            if await self._store.org_role(config.org_id, existing.user_id) is None:
                raise CloisonError(
                    "an account outside this organisation has this e-mail",
                    code=ErrorCode.FORBIDDEN,
                )
            await self._store.link_identity(config.org_id, subject, existing.user_id, now_ms=now_ms)
            return existing.user_id
        if not config.provision:
            raise CloisonError(
                "no account for you in this organisation: ask one of its managers",
                code=ErrorCode.FORBIDDEN,
            )
        name = claims.get("name") if isinstance(claims.get("name"), str) else None
        display = (name or email.partition("@")[0]).strip()[:MAX_NAME_CHARS] or "member"
        user = await self._store.create_member(
            display,
            email,
            email_key(email),
            None,
            org_id=config.org_id,
            now_ms=now_ms,
            actor_id="sso",
            identity=(config.org_id, subject),
        )
        return user.user_id

    # -- the provider ------------------------------------------------------------------------

    async def _config(self, org_id: OrgId) -> SsoConfig:
        config = await self._store.get_sso(org_id)
        if config is None:
            raise NotFoundError("this organisation has no single sign-on")
        return config

    def _client(self, config: SsoConfig) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=config.client_id,
            client_secret=config.client_secret,
            redirect_uri=self._redirect_uri,
            scope="openid email profile",
            code_challenge_method="S256",
            timeout=HTTP_TIMEOUT_S,
        )

    async def _provider(self, issuer: str, *, fresh: bool = False) -> _Provider:
        cached = self._providers.get(issuer)
        now_s = time.monotonic()
        if cached is not None and not fresh and now_s - cached.fetched_s < DISCOVERY_TTL_S:
            return cached
        try:
            metadata = await self._get_json(
                issuer.rstrip("/") + "/.well-known/openid-configuration"
            )
            if metadata.get("issuer") != issuer:
                raise CloisonError(
                    "the provider's discovery document names another issuer",
                    code=ErrorCode.UNAVAILABLE,
                )
            jwks: Any = await self._get_json(str(metadata["jwks_uri"]))
            keys = KeySet.import_key_set(jwks)
        except (httpx.HTTPError, KeyError, ValueError, JoseError) as exc:
            raise CloisonError(
                f"the sign-in provider cannot be reached or read ({type(exc).__name__})",
                code=ErrorCode.UNAVAILABLE,
            ) from None
        provider = _Provider(metadata, keys, now_s)
        self._providers[issuer] = provider
        return provider

    async def _get_json(self, url: str) -> dict[str, Any]:
        reply = await self._http.get(url)
        reply.raise_for_status()
        data = reply.json()
        if not isinstance(data, dict):
            raise ValueError(f"{url}: not a JSON object")
        return data
