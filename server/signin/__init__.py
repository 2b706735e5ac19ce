"""Signing in: passwords, sessions with rotating refresh tokens, single sign-on per organisation.

- ``passwords``: argon2id hashing and verification, off the event loop, bounded in memory;
- ``emails``: login e-mails (checked, compared in lower case);
- ``limits``: the sign-in rate limits, per account and per client address (local or Redis);
- ``sessions``: ``Sessions``, opening, refreshing (rotation, reuse detection), listing and
  revoking sign-in sessions; an access token belongs to its session, and so does a socket;
- ``service``: ``SignIn``, password sign-in, self-registration by e-mail domain, passwords;
- ``oidc``: ``Oidc``, the authorization code flow with PKCE against an organisation's OpenID
  Connect provider, the ID token's checks, the mapping of (organisation, subject) to a user;
- ``routes``: the HTTP routes (``/api/v1/auth/...``, ``/me/password``, ``/me/sessions``,
  ``/admin/orgs/{org_id}/sso``) and their table for the OpenAPI document;
- ``cli``: ``cloison org sso ...``, and the e-mail and password of ``cloison user create``.
"""
