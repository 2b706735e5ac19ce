"""Server configuration: one frozen dataclass, filled from defaults, environment and CLI.

Every option has a ``CLOISON_<NAME>`` environment variable (upper case) and a ``--<name>``
command-line flag (dashes for underscores); the flag wins over the variable, the variable over
the default. ``docs/operations.md`` lists them all.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from protocol import MAX_RETENTION_DAYS
from server.origins import normalize as normalized_origin

LOG_LEVELS = ("debug", "info", "warning", "error")
# Why: the documented bound on how long a membership change can go unnoticed by a node.
MAX_RECONCILE_INTERVAL_S = 5.0
# Why: websockets and browsers accept 1 MiB messages by default; a page stays well below.
MAX_PAGE_BYTES = 512 * 1024
# Why: the bytes a message's fields other than its body take on the wire, at most.
MESSAGE_OVERHEAD_BYTES = 256
# Why: JSON writes a control character of a body as \u00XX: six bytes for one.
JSON_WORST_EXPANSION = 6


@dataclass(frozen=True, slots=True)
class Config:
    host: str = field(default="127.0.0.1", metadata={"help": "address to listen on"})
    port: int = field(default=8000, metadata={"help": "TCP port to listen on"})
    data_dir: Path = field(
        default=Path("."), metadata={"help": "where the SQLite history file lives"}
    )
    store_url: str = field(
        default="",
        metadata={"help": "storage URL; empty means the SQLite file <data-dir>/cloison.sqlite3"},
    )
    sqlite_synchronous: str = field(
        default="FULL",
        metadata={
            "help": "FULL: an ack survives power loss; NORMAL: a process crash only "
            "(for the default store URL)"
        },
    )
    redis_url: str = field(
        default="",
        metadata={"help": "Redis for fan-out between gateway processes; empty: one process"},
    )
    redis_cluster_url: str = field(
        default="",
        metadata={
            "help": "Redis Cluster (7+) instead of --redis-url: fan-out by sharded pub/sub; "
            "seed nodes as redis://h1:p1,h2:p2"
        },
    )
    redis_prefix: str = field(
        default="cloison:", metadata={"help": "prefix of every Redis channel and key"}
    )
    allowed_origins: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "browser Origins allowed to open a WebSocket, comma-separated "
            "(the server's own origin is always allowed)"
        },
    )
    max_frame_bytes: int = field(
        default=64 * 1024, metadata={"help": "largest inbound WebSocket message"}
    )
    max_message_bytes: int = field(
        default=16 * 1024, metadata={"help": "largest message body (UTF-8 bytes)"}
    )
    publish_rate_per_s: float = field(
        default=20.0, metadata={"help": "sustained writes per user and second"}
    )
    publish_burst: int = field(default=60, metadata={"help": "writes a user may burst"})
    queue_max_bytes: int = field(
        default=1024 * 1024,
        metadata={"help": "outbound bytes queued per connection before it is closed as slow"},
    )
    max_inflight_writes: int = field(
        default=256, metadata={"help": "unacknowledged writes per connection"}
    )
    auth_timeout_s: float = field(
        default=10.0, metadata={"help": "time to send the auth frame after connecting"}
    )
    idle_timeout_s: float = field(
        default=90.0, metadata={"help": "close a connection that sends nothing for this long"}
    )
    ping_interval_s: float = field(
        default=20.0, metadata={"help": "WebSocket ping interval (0 disables)"}
    )
    send_timeout_s: float = field(
        default=8.0, metadata={"help": "evict a connection whose socket accepts nothing this long"}
    )
    tcp_user_timeout_s: float = field(
        default=30.0,
        metadata={"help": "kernel drops a peer that acknowledges nothing this long (Linux)"},
    )
    shutdown_timeout_s: float = field(
        default=10.0, metadata={"help": "time allowed for in-flight work on shutdown"}
    )
    public_pages: bool = field(
        default=False,
        metadata={
            "help": "serve a read-only page of each public sphere at /public/<sphere_id>, "
            "to anyone without an account"
        },
    )
    token_ttl_days: int = field(
        default=365, metadata={"help": "default lifetime of bot/API tokens, in days (0: none)"}
    )
    log_level: str = field(default="info", metadata={"help": "debug, info, warning or error"})
    log_format: str = field(
        default="text", metadata={"help": "text, or json for one JSON object per line"}
    )
    tls_cert: str = field(
        default="", metadata={"help": "PEM certificate chain: serve HTTPS and WSS directly"}
    )
    tls_key: str = field(default="", metadata={"help": "PEM private key of --tls-cert"})
    drain_batch: int = field(
        default=500,
        metadata={
            "help": "on shutdown, connections closed per batch (so clients reconnect "
            "gradually instead of all at once)"
        },
    )
    drain_interval_s: float = field(
        default=0.2, metadata={"help": "pause between two shutdown batches"}
    )
    # Rate classes beside publish (--publish-rate-per-s): each a per-user token bucket.
    membership_rate_per_s: float = field(
        default=5.0, metadata={"help": "join, leave, member add/remove, role changes per s"}
    )
    membership_burst: int = field(default=50, metadata={"help": "membership changes at once"})
    sphere_admin_rate_per_s: float = field(
        default=1.0, metadata={"help": "sphere creations and updates per user and second"}
    )
    sphere_admin_burst: int = field(default=30, metadata={"help": "sphere changes at once"})
    read_marker_rate_per_s: float = field(
        default=5.0, metadata={"help": "read-marker updates per user and second"}
    )
    read_marker_burst: int = field(default=30, metadata={"help": "read-marker updates at once"})
    typing_rate_per_s: float = field(
        default=5.0, metadata={"help": "typing notices per user and second (all spheres)"}
    )
    typing_burst: int = field(default=20, metadata={"help": "typing notices at once"})
    query_rate_per_s: float = field(
        default=50.0, metadata={"help": "reads (history, subscribe, lists) per user and second"}
    )
    query_burst: int = field(default=200, metadata={"help": "reads at once"})
    public_url: str = field(
        default="",
        metadata={
            "help": "the URL browsers open to reach this server (https://chat.example.org); "
            "its origin may open WebSockets"
        },
    )

    # Sessions: token lifetimes, revocation reaching every node, connections per user.
    session_ttl_days: int = field(
        default=30,
        metadata={"help": "default lifetime of interactive session tokens, in days (0: none)"},
    )
    session_poll_interval_s: float = field(
        default=0.5,
        metadata={
            "help": "how often each node reads the store's session changes, so that a revoked "
            "token, or a disabled user, loses its live sockets on every node"
        },
    )
    max_connections_per_user: int = field(
        default=64,
        metadata={"help": "WebSocket connections a user may hold on one node (4003 beyond)"},
    )

    # Sign-in (server.signin): session lifetimes, and the limits that slow password guessing.
    access_ttl_s: int = field(
        default=900,
        metadata={"help": "lifetime of a sign-in session's access token, in seconds"},
    )
    refresh_ttl_days: int = field(
        default=30,
        metadata={
            "help": "how long a sign-in session lasts from sign-in (its refresh tokens and "
            "its sockets), in days"
        },
    )
    signin_account_per_min: float = field(
        default=5.0,
        metadata={"help": "password attempts per account (e-mail) and minute, sustained"},
    )
    signin_account_burst: int = field(
        default=10, metadata={"help": "password attempts per account at once"}
    )
    signin_address_per_min: float = field(
        default=30.0,
        metadata={"help": "sign-in and registration attempts per client address and minute"},
    )
    signin_address_burst: int = field(
        default=60, metadata={"help": "sign-in attempts per client address at once"}
    )

    # Privacy: what members may take with them (docs/privacy.md, "Export").
    member_exports: bool = field(
        default=True,
        metadata={
            "help": "users may download their own data (GET /api/v1/me/export); off: only "
            "server administrators export a user's data, sphere administrators their sphere"
        },
    )

    @property
    def page_bytes(self) -> int:
        """The most encoded bytes one reply (a history page, a list) may take."""
        return min(self.queue_max_bytes // 2, MAX_PAGE_BYTES)

    # Bounds on what one peer can hold before it has authenticated (server/wire).
    max_header_bytes: int = field(
        default=16 * 1024,
        metadata={"help": "bytes of an HTTP request line and headers (431 beyond)"},
    )
    max_headers: int = field(
        default=100, metadata={"help": "header lines in one HTTP request (431 beyond)"}
    )
    handshake_timeout_s: float = field(
        default=10.0,
        metadata={"help": "time from TCP connect to the end of the headers or WebSocket upgrade"},
    )
    max_connections_per_address: int = field(
        default=4096,
        metadata={"help": "open sockets per client address (503 beyond; 0: no cap)"},
    )
    max_unauthenticated_per_address: int = field(
        default=128,
        metadata={
            "help": "sockets per client address not yet past the WebSocket auth frame "
            "(503 beyond; 0: no cap)"
        },
    )
    max_unauthenticated: int = field(
        default=0,
        metadata={
            "help": "sockets not yet past the auth frame, all addresses together "
            "(503 beyond; 0: half the process's file descriptor limit)"
        },
    )
    uncapped_addresses: tuple[str, ...] = field(
        default=("127.0.0.1", "::1"),
        metadata={
            "help": "client addresses exempt from the per-address caps, comma-separated "
            "(a reverse proxy on the same machine)"
        },
    )
    # Membership: how stale a node's view of a sphere's members may get when the broker fails
    # silently (a paused Redis); see docs/architecture.md, "The access model".
    reconcile_interval_s: float = field(
        default=2.0,
        metadata={
            "help": "how often each node compares its spheres with the store and catches "
            "up those behind (at most 5 s: it bounds how long a removal can go unnoticed)"
        },
    )
    # Account deletion (docs/privacy.md, "Account deletion").
    account_deletion: str = field(
        default="erase",
        metadata={
            "help": "what becomes of what a deleted account wrote: erase (tombstones) or "
            "anonymise (kept, with no author)"
        },
    )
    account_deletion_batch: int = field(
        default=200,
        metadata={"help": "events a deletion job rewrites per transaction"},
    )
    account_deletion_lease_s: float = field(
        default=10.0,
        metadata={
            "help": "how long a gateway holds a deletion job without renewing it before "
            "another gateway may take it over (it renews it at every batch)"
        },
    )
    account_deletion_pause_s: float = field(
        default=0.01,
        metadata={"help": "pause between two batches of a deletion job, so writes go first"},
    )

    # Retention (docs/privacy.md, "Retention and legal hold").
    retention_days: int = field(
        default=0,
        metadata={
            "help": "days a message is kept before the retention job removes it; a sphere may "
            "choose fewer (0: keep forever, and spheres choose freely)"
        },
    )
    retention_interval_s: float = field(
        default=3600.0, metadata={"help": "how often the retention job passes over the spheres"}
    )
    retention_batch: int = field(
        default=500,
        metadata={"help": "events one retention transaction removes at most (1-10000)"},
    )
    # Erasure on PostgreSQL: see docs/privacy.md, "Erasure".
    pg_compact_interval_h: float = field(
        default=24.0,
        metadata={
            "help": "hours between compactions of a PostgreSQL store (erased content leaves "
            "its files; each table's rewrite is bounded to 2 s); 0: never, run "
            "'cloison privacy compact' instead"
        },
    )

    @property
    def resolved_store_url(self) -> str:
        if self.store_url:
            return self.store_url
        path = quote(str((self.data_dir / "cloison.sqlite3").resolve()))
        return f"sqlite:///{path}?synchronous={self.sqlite_synchronous}"

    @classmethod
    def load(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        file: Path | None = None,
        **overrides: Any,
    ) -> Config:
        """Build a Config from a TOML file, ``CLOISON_*`` variables and explicit overrides,
        each winning over the one before.

        Raises:
            ValueError: a value does not parse or is out of range, or the file is unreadable.
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = _read_file(cls, file) if file is not None else {}
        for f in dataclasses.fields(cls):
            raw = env.get(f"CLOISON_{f.name.upper()}")
            if raw is not None:
                values[f.name] = _parse(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        positive = (
            "max_frame_bytes",
            "max_message_bytes",
            "publish_rate_per_s",
            "publish_burst",
            "membership_rate_per_s",
            "membership_burst",
            "sphere_admin_rate_per_s",
            "sphere_admin_burst",
            "read_marker_rate_per_s",
            "read_marker_burst",
            "typing_rate_per_s",
            "typing_burst",
            "query_rate_per_s",
            "query_burst",
            "queue_max_bytes",
            "max_inflight_writes",
            "auth_timeout_s",
            "idle_timeout_s",
            "send_timeout_s",
            "shutdown_timeout_s",
            "session_poll_interval_s",
            "max_connections_per_user",
            "access_ttl_s",
            "refresh_ttl_days",
            "signin_account_per_min",
            "signin_account_burst",
            "signin_address_per_min",
            "signin_address_burst",
            "account_deletion_batch",
            "account_deletion_lease_s",
            "max_header_bytes",
            "max_headers",
            "handshake_timeout_s",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{f.name} must be a finite number")
        for name in (
            "ping_interval_s",
            "tcp_user_timeout_s",
            "token_ttl_days",
            "session_ttl_days",
            "max_connections_per_address",
            "max_unauthenticated_per_address",
            "max_unauthenticated",
            "account_deletion_pause_s",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.redis_cluster_url and ("{" in self.redis_prefix or "}" in self.redis_prefix):
            raise ValueError("redis_prefix must not contain braces with a Redis Cluster")
        if self.log_format not in ("text", "json"):
            raise ValueError("log_format must be text or json")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert and tls_key go together")
        if self.drain_batch <= 0 or self.drain_interval_s < 0:
            raise ValueError("drain_batch must be positive and drain_interval_s not negative")
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}")
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be between 0 and 65535")
        if self.account_deletion not in ("erase", "anonymise"):
            raise ValueError("account_deletion must be erase or anonymise")
        if self.sqlite_synchronous not in ("FULL", "NORMAL"):
            raise ValueError("sqlite_synchronous must be FULL or NORMAL")
        if not 0 < self.reconcile_interval_s <= MAX_RECONCILE_INTERVAL_S:
            raise ValueError(
                f"reconcile_interval_s must be above 0 and at most {MAX_RECONCILE_INTERVAL_S}"
            )
        if not 0 <= self.retention_days <= MAX_RETENTION_DAYS:
            raise ValueError(f"retention_days must be between 0 and {MAX_RETENTION_DAYS}")
        if self.retention_interval_s <= 0 or not 1 <= self.retention_batch <= 10_000:
            raise ValueError(
                "retention_interval_s must be positive and retention_batch between 1 and 10000"
            )
        if not self.pg_compact_interval_h >= 0:
            raise ValueError("pg_compact_interval_h must be 0 (never) or more")
        if self.public_url and normalized_origin(self.public_url) is None:
            raise ValueError("public_url must be an http(s) URL without path, as https://host")
        if self.max_message_bytes >= self.max_frame_bytes:
            raise ValueError("max_message_bytes must be smaller than max_frame_bytes")
        worst_message = self.max_message_bytes * JSON_WORST_EXPANSION + MESSAGE_OVERHEAD_BYTES
        if worst_message > self.page_bytes:
            # Every stored message must stay deliverable, in any encoding, alone in a reply.
            raise ValueError(
                f"max_message_bytes: {self.max_message_bytes} bytes can take {worst_message} "
                f"in JSON, more than a reply may ({self.page_bytes}: half of queue_max_bytes, "
                f"at most {MAX_PAGE_BYTES})"
            )


def _read_file(cls: type[Config], file: Path) -> dict[str, Any]:
    """Options from a TOML file: the same names as the flags, with underscores."""
    try:
        data = tomllib.loads(file.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read {file}: {exc}") from None
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in fields:
            raise ValueError(f"{file}: unknown option {key!r}")
        kind = str(fields[name].type)
        if kind == "Path":
            value = Path(value)
        elif kind.startswith("tuple"):
            value = tuple(value) if isinstance(value, list) else _parse(fields[name], str(value))
        elif kind == "float" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        expected = {"int": int, "float": float, "str": str, "Path": Path, "bool": bool}
        if not isinstance(value, expected.get(kind, tuple)) or (
            isinstance(value, bool) != (kind == "bool")
        ):
            raise ValueError(f"{file}: {key} must be of type {kind}")
        values[name] = value
    return values


# The words a switch accepts in a variable or a flag.
_SWITCH = {"1": True, "true": True, "yes": True, "on": True}
_SWITCH.update({"0": False, "false": False, "no": False, "off": False})


def _switch(raw: str) -> bool:
    try:
        return _SWITCH[raw.strip().lower()]
    except KeyError:
        raise ValueError(f"expected true or false, not {raw!r}") from None


def _parse(f: dataclasses.Field[Any], raw: str) -> Any:
    kind = f.type
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "Path":
            return Path(raw)
        if kind == "bool":
            return _switch(raw)
        if kind.startswith("tuple"):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"CLOISON_{f.name.upper()}: cannot parse {raw!r}") from None
    return raw
