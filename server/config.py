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

LOG_LEVELS = ("debug", "info", "warning", "error")
# Why: the documented bound on how long a membership change can go unnoticed by a node.
MAX_RECONCILE_INTERVAL_S = 5.0


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
        default=30.0, metadata={"help": "evict a connection whose socket accepts nothing this long"}
    )
    tcp_user_timeout_s: float = field(
        default=30.0,
        metadata={"help": "kernel drops a peer that acknowledges nothing this long (Linux)"},
    )
    shutdown_timeout_s: float = field(
        default=10.0, metadata={"help": "time allowed for in-flight work on shutdown"}
    )
    token_ttl_days: int = field(
        default=365, metadata={"help": "lifetime of tokens made by the admin commands (0: none)"}
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
    # Membership: how stale a node's view of a sphere's members may get when the broker fails
    # silently (a paused Redis); see docs/architecture.md, "The access model".
    reconcile_interval_s: float = field(
        default=2.0,
        metadata={
            "help": "how often each node compares its spheres with the store and catches "
            "up those behind (at most 5 s: it bounds how long a removal can go unnoticed)"
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
            "queue_max_bytes",
            "max_inflight_writes",
            "auth_timeout_s",
            "idle_timeout_s",
            "send_timeout_s",
            "shutdown_timeout_s",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{f.name} must be a finite number")
        for name in ("ping_interval_s", "tcp_user_timeout_s", "token_ttl_days"):
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
        if self.sqlite_synchronous not in ("FULL", "NORMAL"):
            raise ValueError("sqlite_synchronous must be FULL or NORMAL")
        if not 0 < self.reconcile_interval_s <= MAX_RECONCILE_INTERVAL_S:
            raise ValueError(
                f"reconcile_interval_s must be above 0 and at most {MAX_RECONCILE_INTERVAL_S}"
            )
        if self.max_message_bytes >= self.max_frame_bytes:
            raise ValueError("max_message_bytes must be smaller than max_frame_bytes")


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
        elif kind == "float" and isinstance(value, int):
            value = float(value)
        expected = {"int": int, "float": float, "str": str, "Path": Path}.get(kind, tuple)
        if not isinstance(value, expected) or isinstance(value, bool):
            raise ValueError(f"{file}: {key} must be of type {kind}")
        values[name] = value
    return values


def _parse(f: dataclasses.Field[Any], raw: str) -> Any:
    kind = f.type
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "Path":
            return Path(raw)
        if kind.startswith("tuple"):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"CLOISON_{f.name.upper()}: cannot parse {raw!r}") from None
    return raw
