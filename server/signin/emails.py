"""Login e-mails: a light check of the shape, and the lowercase key they are compared by.

Only the shape is checked (one ``@``, a local part, a domain of DNS labels): whether the
address receives mail is the organisation's business, not the server's. The whole address is
compared in lower case, so ``Ada@Example.org`` and ``ada@example.org`` are one account.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from protocol import ProtocolViolation

MAX_EMAIL_CHARS = 254  # RFC 5321's path limit


def valid_email(value: Any, field: str = "email") -> str:
    """The address, trimmed.

    Raises:
        ProtocolViolation: not shaped like an e-mail address.
    """
    if not isinstance(value, str):
        raise ProtocolViolation(f"{field}: expected a string")
    email = value.strip()
    local, at, domain = email.rpartition("@")
    if (
        not at
        or not local
        or len(email) > MAX_EMAIL_CHARS
        or any(unicodedata.category(c)[0] in "CZ" for c in email)
        or not _domain(domain)
    ):
        raise ProtocolViolation(f"{field}: expected an e-mail address")
    return email


def email_key(email: str) -> str:
    return email.lower()


def email_domain(email: str) -> str:
    return email.rpartition("@")[2].lower()


def _domain(domain: str) -> bool:
    labels = domain.split(".")
    return len(labels) >= 2 and all(
        0 < len(label) <= 63 and all(c.isalnum() or c == "-" for c in label) for label in labels
    )
