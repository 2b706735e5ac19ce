-- Sign-in: the same tables, columns and indexes as sqlite/0014_signin.sql.

-- One row per user who has a login e-mail; the password is optional (SSO-only accounts).
CREATE TABLE credentials (
    user_id       TEXT PRIMARY KEY REFERENCES users (user_id) ON DELETE CASCADE,
    email         TEXT NOT NULL,         -- as typed, for display
    email_key     TEXT NOT NULL UNIQUE,  -- lowercase: the sign-in lookup (its unique index)
    password_hash TEXT,                  -- an argon2id PHC string; NULL: no password
    password_ms   BIGINT,               -- when the password was last set
    created_ms    BIGINT NOT NULL
);

-- A sign-in. The socket and the access tokens belong to it; it ends at expires_ms (the
-- refresh lifetime, fixed at sign-in) or when revoked.
CREATE TABLE auth_sessions (
    session_id   TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    method       TEXT NOT NULL,  -- password | oidc
    device       TEXT,           -- the User-Agent at sign-in, cut to 200 characters
    address      TEXT,           -- the client address, truncated (IPv4 /24, IPv6 /48)
    created_ms   BIGINT NOT NULL,
    last_used_ms BIGINT NOT NULL,  -- the last sign-in or refresh
    expires_ms   BIGINT NOT NULL,
    revoked_ms   BIGINT,
    revoked_why  TEXT            -- signed_out | revoked | reused | password_changed | disabled
);

-- GET /me/sessions, newest first.
CREATE INDEX auth_sessions_by_user ON auth_sessions (user_id, created_ms);

-- Every refresh token a session was given; only the newest is unused. Presenting a used one
-- again is reuse: the session is revoked.
CREATE TABLE refresh_tokens (
    refresh_id  TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL REFERENCES auth_sessions (session_id) ON DELETE CASCADE,
    secret_hash BYTEA NOT NULL,  -- SHA-256 of the random secret
    created_ms  BIGINT NOT NULL,
    used_ms     BIGINT         -- set when exchanged for a new pair
);

CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_id);

-- An access token names its session; other tokens (pasted, bots) have none.
ALTER TABLE tokens ADD COLUMN session_id TEXT;

CREATE INDEX tokens_by_session ON tokens (session_id) WHERE session_id IS NOT NULL;

-- Single sign-on of an organisation, set by a server administrator.
CREATE TABLE sso_configs (
    org_id        TEXT PRIMARY KEY REFERENCES organisations (org_id) ON DELETE CASCADE,
    issuer        TEXT NOT NULL,
    client_id     TEXT NOT NULL,
    client_secret TEXT NOT NULL,
    email_domains TEXT NOT NULL DEFAULT '[]',  -- JSON list; empty: any verified e-mail
    provision     BOOLEAN NOT NULL DEFAULT FALSE,  -- create a member on first sign-in
    updated_ms    BIGINT NOT NULL
);

-- Who a provider's subject is, per organisation.
CREATE TABLE sso_identities (
    org_id     TEXT NOT NULL REFERENCES organisations (org_id) ON DELETE CASCADE,
    subject    TEXT NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (org_id, subject)
);

CREATE INDEX sso_identities_by_user ON sso_identities (user_id);

-- Short-lived, single-use server-side state: the OpenID Connect `state` of a sign-in under
-- way (with its nonce and PKCE verifier), and the one-time sign-in code the callback hands
-- the browser in a cookie. Keyed by the SHA-256 of the value; taken (deleted) on use.
CREATE TABLE signin_grants (
    grant_id   TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,  -- oidc_state | signin_code
    org_id     TEXT,
    user_id    TEXT,
    nonce      TEXT,
    verifier   TEXT,
    expires_ms BIGINT NOT NULL
);

CREATE INDEX signin_grants_by_expiry ON signin_grants (expires_ms);
