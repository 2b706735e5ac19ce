"""Config: defaults, ``CLOISON_*`` parsing, overrides, validation and the default store URL."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from server.config import Config

DEFAULTS = {
    "host": "127.0.0.1",
    "port": 8000,
    "data_dir": Path("."),
    "store_url": "",
    "sqlite_synchronous": "FULL",
    "redis_url": "",
    "redis_cluster_url": "",
    "redis_prefix": "cloison:",
    "allowed_origins": (),
    "max_frame_bytes": 64 * 1024,
    "max_message_bytes": 16 * 1024,
    "publish_rate_per_s": 20.0,
    "publish_burst": 60,
    "queue_max_bytes": 1024 * 1024,
    "max_inflight_writes": 256,
    "auth_timeout_s": 10.0,
    "idle_timeout_s": 90.0,
    "ping_interval_s": 20.0,
    "send_timeout_s": 8.0,
    "tcp_user_timeout_s": 30.0,
    "shutdown_timeout_s": 10.0,
    "public_pages": False,
    "member_exports": True,
    "token_ttl_days": 365,
    "log_level": "info",
    "log_format": "text",
    "tls_cert": "",
    "tls_key": "",
    "drain_batch": 500,
    "drain_interval_s": 0.2,
    "reconcile_interval_s": 2.0,
    "account_deletion": "erase",
    "account_deletion_batch": 200,
    "account_deletion_lease_s": 10.0,
    "account_deletion_pause_s": 0.01,
    "retention_days": 0,
    "retention_interval_s": 3600.0,
    "retention_batch": 500,
    "pg_compact_interval_h": 24.0,
    "membership_rate_per_s": 5.0,
    "membership_burst": 50,
    "sphere_admin_rate_per_s": 1.0,
    "sphere_admin_burst": 30,
    "read_marker_rate_per_s": 5.0,
    "read_marker_burst": 30,
    "typing_rate_per_s": 5.0,
    "typing_burst": 20,
    "query_rate_per_s": 50.0,
    "query_burst": 200,
    "public_url": "",
    "session_ttl_days": 30,
    "session_poll_interval_s": 0.5,
    "max_connections_per_user": 64,
    "access_ttl_s": 900,
    "refresh_ttl_days": 30,
    "signin_account_per_min": 5.0,
    "signin_account_burst": 10,
    "signin_address_per_min": 30.0,
    "signin_address_burst": 60,
    "max_header_bytes": 16 * 1024,
    "max_headers": 100,
    "handshake_timeout_s": 10.0,
    "max_connections_per_address": 4096,
    "max_unauthenticated_per_address": 128,
    "max_unauthenticated": 0,
    "uncapped_addresses": ("127.0.0.1", "::1"),
}

POSITIVE = [
    "membership_rate_per_s",
    "membership_burst",
    "sphere_admin_rate_per_s",
    "query_burst",
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
    "max_header_bytes",
    "max_headers",
    "handshake_timeout_s",
]


def env_name(field: str) -> str:
    return f"CLOISON_{field.upper()}"


def test_defaults() -> None:
    config = Config()
    assert {f.name: getattr(config, f.name) for f in dataclasses.fields(Config)} == DEFAULTS
    assert Config.load(env={}) == config
    config.validate()


def test_every_option_is_documented() -> None:
    for f in dataclasses.fields(Config):
        assert f.metadata.get("help"), f.name


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().port = 1  # type: ignore[misc]


def test_load_parses_each_kind_from_the_environment() -> None:
    config = Config.load(
        env={
            "CLOISON_HOST": "0.0.0.0",
            "CLOISON_PORT": "9001",
            "CLOISON_DATA_DIR": "/var/lib/cloison",
            "CLOISON_PUBLISH_RATE_PER_S": "2.5",
            "CLOISON_ALLOWED_ORIGINS": " https://a.example , ,https://b.example:8443,",
            "CLOISON_SQLITE_SYNCHRONOUS": "NORMAL",
            "CLOISON_TOKEN_TTL_DAYS": "0",
            "CLOISON_PING_INTERVAL_S": "0",
        }
    )
    assert config.host == "0.0.0.0"
    assert config.port == 9001
    assert config.data_dir == Path("/var/lib/cloison")
    assert isinstance(config.data_dir, Path)
    assert config.publish_rate_per_s == 2.5
    assert config.allowed_origins == ("https://a.example", "https://b.example:8443")
    assert config.sqlite_synchronous == "NORMAL"
    assert config.token_ttl_days == 0
    assert config.ping_interval_s == 0.0


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(Config)])
def test_every_field_has_a_variable(name: str) -> None:
    value = {
        "host": "::1",
        "port": "1",
        "data_dir": "/d",
        "store_url": "sqlite:////d/x.sqlite3",
        "sqlite_synchronous": "NORMAL",
        "redis_url": "redis://127.0.0.1:6379/0",
        "redis_prefix": "test:",
        "redis_cluster_url": "redis://127.0.0.1:7000,127.0.0.1:7001",
        "allowed_origins": "https://x.example",
        "max_frame_bytes": "100000",
        "log_level": "debug",
        "log_format": "json",
        "tls_cert": "/c.pem",
        "tls_key": "/k.pem",
        "reconcile_interval_s": "0.5",
        "public_url": "https://chat.example",
        "queue_max_bytes": "262144",
        "public_pages": "yes",
        "account_deletion": "anonymise",
        "member_exports": "off",
    }.get(name, "7")
    # TLS options only go together.
    pair = {"tls_cert": "tls_key", "tls_key": "tls_cert"}.get(name)
    env = {env_name(name): value} | ({env_name(pair): "/other.pem"} if pair else {})
    config = Config.load(env=env)
    assert getattr(config, name) != DEFAULTS[name]
    assert type(getattr(config, name)) is type(DEFAULTS[name])


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("true", True), ("Yes", True), ("on", True), ("0", False), ("off", False)],
)
def test_switches_read_the_usual_words(raw: str, expected: bool) -> None:
    assert Config.load(env={"CLOISON_PUBLIC_PAGES": raw}).public_pages is expected


def test_a_switch_in_a_file_is_a_boolean(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text("public_pages = true\n")
    bad.write_text('public_pages = "yes"\n')
    assert Config.load(env={}, file=good).public_pages is True
    with pytest.raises(ValueError, match="public_pages must be of type bool"):
        Config.load(env={}, file=bad)


def test_unrelated_variables_are_ignored() -> None:
    assert Config.load(env={"CLOISON_NOT_AN_OPTION": "x", "PORT": "1", "cloison_port": "2"}) == (
        Config()
    )


def test_empty_origins_variable_means_none() -> None:
    assert Config.load(env={"CLOISON_ALLOWED_ORIGINS": ""}).allowed_origins == ()


def test_overrides_win_over_the_environment() -> None:
    env = {"CLOISON_PORT": "9001", "CLOISON_HOST": "0.0.0.0"}
    config = Config.load(env=env, port=9100, host=None)
    assert config.port == 9100
    assert config.host == "0.0.0.0"  # a None override leaves the variable in force


def test_load_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in DEFAULTS:
        monkeypatch.delenv(env_name(name), raising=False)
    monkeypatch.setenv("CLOISON_PORT", "9002")
    assert Config.load().port == 9002


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("port", "eighty"),
        ("port", "80.0"),
        ("port", ""),
        ("max_frame_bytes", "1e6"),
        ("publish_rate_per_s", "fast"),
        ("publish_burst", "1.5"),
        ("idle_timeout_s", "90s"),
        ("public_pages", "maybe"),
        ("public_pages", ""),
    ],
)
def test_unparsable_values(name: str, raw: str) -> None:
    with pytest.raises(ValueError, match=f"^{env_name(name)}: cannot parse") as info:
        Config.load(env={env_name(name): raw})
    assert repr(raw) in str(info.value)


@pytest.mark.parametrize("name", POSITIVE)
@pytest.mark.parametrize("raw", ["0", "-1"])
def test_values_that_must_be_positive(name: str, raw: str) -> None:
    with pytest.raises(ValueError, match=f"^{name} must be positive$"):
        Config.load(env={env_name(name): raw})


@pytest.mark.parametrize("port", [-1, 65536])
def test_port_range(port: int) -> None:
    with pytest.raises(ValueError, match="port must be between 0 and 65535"):
        Config.load(env={}, port=port)
    assert Config.load(env={"CLOISON_PORT": "0"}).port == 0  # any free port
    assert Config.load(env={"CLOISON_PORT": "65535"}).port == 65535


@pytest.mark.parametrize("mode", ["OFF", "normal", "", "EXTRA"])
def test_bad_sync_mode(mode: str) -> None:
    with pytest.raises(ValueError, match="sqlite_synchronous must be FULL or NORMAL"):
        Config.load(env={"CLOISON_SQLITE_SYNCHRONOUS": mode})


@pytest.mark.parametrize("message_bytes", [64 * 1024, 64 * 1024 + 1, 10**9])
def test_message_must_fit_in_a_frame(message_bytes: int) -> None:
    with pytest.raises(ValueError, match="max_message_bytes must be smaller than max_frame_bytes"):
        Config.load(env={"CLOISON_MAX_MESSAGE_BYTES": str(message_bytes)})
    assert Config.load(env={"CLOISON_MAX_MESSAGE_BYTES": str(64 * 1024 - 1)})


def test_validation_also_applies_to_overrides() -> None:
    with pytest.raises(ValueError, match="max_frame_bytes must be positive"):
        Config.load(env={}, max_frame_bytes=0)


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("publish_rate_per_s", "nan"),
        ("publish_rate_per_s", "inf"),
        ("idle_timeout_s", "inf"),
        ("auth_timeout_s", "nan"),
        ("ping_interval_s", "-1"),
        ("token_ttl_days", "-1"),
        ("log_level", "verbose"),
    ],
)
def test_nonsense_values_are_refused(name: str, raw: str) -> None:
    with pytest.raises(ValueError, match=name):
        Config.load(env={env_name(name): raw})


def sqlite_path(url: str) -> tuple[str, str]:
    """(file path, query) of a ``sqlite:///`` URL, read as ``storage.open_store`` documents it."""
    parts = urlsplit(url)
    assert parts.scheme == "sqlite"
    assert parts.netloc == ""
    return unquote(parts.path.removeprefix("/")), parts.query


def test_default_store_url_points_into_data_dir(tmp_path: Path) -> None:
    config = Config.load(env={"CLOISON_DATA_DIR": str(tmp_path)})
    path, query = sqlite_path(config.resolved_store_url)
    assert path == str(tmp_path.resolve() / "cloison.sqlite3")
    assert query == "synchronous=FULL"


def test_default_store_url_carries_the_sync_mode(tmp_path: Path) -> None:
    config = Config.load(env={"CLOISON_SQLITE_SYNCHRONOUS": "NORMAL"}, data_dir=tmp_path)
    assert config.resolved_store_url == (
        f"sqlite:///{tmp_path.resolve()}/cloison.sqlite3?synchronous=NORMAL"
    )


def test_relative_data_dir_is_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path, _ = sqlite_path(Config(data_dir=Path("data")).resolved_store_url)
    assert Path(path).is_absolute()
    assert path == str(tmp_path.resolve() / "data" / "cloison.sqlite3")
    path, _ = sqlite_path(Config().resolved_store_url)
    assert path == str(tmp_path.resolve() / "cloison.sqlite3")


def test_explicit_store_url_is_used_verbatim() -> None:
    url = "sqlite:////srv/other.sqlite3"
    config = Config.load(env={"CLOISON_STORE_URL": url, "CLOISON_SQLITE_SYNCHRONOUS": "NORMAL"})
    assert config.resolved_store_url == url


@pytest.mark.parametrize("name", ["a#b", "a?b", "a%41b"])
def test_store_url_survives_unusual_directory_names(tmp_path: Path, name: str) -> None:
    config = Config(data_dir=tmp_path / name)
    path, query = sqlite_path(config.resolved_store_url)
    assert path == str(tmp_path.resolve() / name / "cloison.sqlite3")
    assert query == "synchronous=FULL"


def test_store_url_with_spaces_in_the_directory(tmp_path: Path) -> None:
    config = Config(data_dir=tmp_path / "my data")
    path, query = sqlite_path(config.resolved_store_url)
    assert path == str(tmp_path.resolve() / "my data" / "cloison.sqlite3")
    assert query == "synchronous=FULL"


def test_config_file_is_overridden_by_env_and_flags(tmp_path: Path) -> None:
    file = tmp_path / "cloison.toml"
    file.write_text(
        'port = 9001\nhost = "0.0.0.0"\npublish-rate-per-s = 5\n'
        'allowed_origins = ["https://a.example"]\ndata_dir = "/srv/cloison"\n'
    )
    config = Config.load(env={"CLOISON_PORT": "9002"}, file=file)
    assert (config.host, config.port, config.publish_rate_per_s) == ("0.0.0.0", 9002, 5.0)
    assert config.allowed_origins == ("https://a.example",)
    assert config.data_dir == Path("/srv/cloison")
    assert Config.load(env={}, file=file, port=9003).port == 9003


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nope = 1\n", "unknown option 'nope'"),
        ('port = "80"\n', "port must be of type int"),
        ("port = true\n", "port must be of type int"),
        ("port = \n", "cannot read"),
    ],
)
def test_bad_config_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    file = tmp_path / "cloison.toml"
    file.write_text(text)
    with pytest.raises(ValueError, match=message):
        Config.load(env={}, file=file)


def test_tls_options_go_together() -> None:
    with pytest.raises(ValueError, match="tls_cert and tls_key"):
        Config.load(env={"CLOISON_TLS_CERT": "/x.pem"})


@pytest.mark.parametrize("interval", ["0", "-1", "5.5"])
def test_reconcile_interval_is_bounded(interval: str) -> None:
    with pytest.raises(ValueError, match="reconcile_interval_s"):
        Config.load(env={"CLOISON_RECONCILE_INTERVAL_S": interval})
    assert Config.load(env={"CLOISON_RECONCILE_INTERVAL_S": "5"}).reconcile_interval_s == 5.0


def test_compaction_interval_is_never_negative() -> None:
    with pytest.raises(ValueError, match="pg_compact_interval_h"):
        Config.load(env={"CLOISON_PG_COMPACT_INTERVAL_H": "-1"})
    assert Config.load(env={"CLOISON_PG_COMPACT_INTERVAL_H": "0"}).pg_compact_interval_h == 0.0


@pytest.mark.parametrize("url", ["chat.example", "ftp://chat.example", "https://chat.example/app"])
def test_public_url_is_an_origin(url: str) -> None:
    with pytest.raises(ValueError, match="public_url"):
        Config.load(env={"CLOISON_PUBLIC_URL": url})


def test_every_storable_message_fits_a_reply_in_json() -> None:
    """A body of control characters takes six bytes each in JSON; it must still be sendable."""
    Config.load(
        env={"CLOISON_MAX_MESSAGE_BYTES": str(80 * 1024), "CLOISON_MAX_FRAME_BYTES": "1000000"}
    )
    with pytest.raises(ValueError, match=r"max_message_bytes: .* in JSON"):
        Config.load(
            env={"CLOISON_MAX_MESSAGE_BYTES": str(90 * 1024), "CLOISON_MAX_FRAME_BYTES": "1000000"}
        )
    with pytest.raises(ValueError, match="max_message_bytes"):
        Config.load(env={"CLOISON_QUEUE_MAX_BYTES": str(128 * 1024)})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RETENTION_DAYS", "-1"),
        ("RETENTION_DAYS", "36501"),
        ("RETENTION_INTERVAL_S", "0"),
        ("RETENTION_BATCH", "0"),
        ("RETENTION_BATCH", "10001"),
    ],
)
def test_retention_options_are_bounded(name: str, value: str) -> None:
    with pytest.raises(ValueError, match="retention_"):
        Config.load(env={f"CLOISON_{name}": value})
    assert Config.load(env={"CLOISON_RETENTION_DAYS": "36500"}).retention_days == 36500
