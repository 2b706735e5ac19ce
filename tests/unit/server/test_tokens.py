"""Token shape: ``clo_<token_id>_<secret>`` and ``split_token``."""

from __future__ import annotations

import secrets

import pytest
from hypothesis import given, settings, strategies as st

from server.auth import TOKEN_PREFIX, split_token


def test_prefix() -> None:
    assert TOKEN_PREFIX == "clo_"


@pytest.mark.parametrize(
    ("token", "parts"),
    [
        ("clo_abc_secret", ("abc", "secret")),
        ("clo_0123456789abcdef_s3cr3t", ("0123456789abcdef", "s3cr3t")),
        ("clo_abc_sec_ret", ("abc", "sec_ret")),  # the secret may hold "_", the id may not
        ("clo_abc__", ("abc", "_")),
        ("clo_a_b", ("a", "b")),
    ],
)
def test_good_shapes(token: str, parts: tuple[str, str]) -> None:
    assert split_token(token) == parts


@pytest.mark.parametrize(
    "token",
    [
        "",
        "clo_",
        "clo_abc",  # no separator
        "clo_abc_",  # no secret
        "clo__secret",  # no id
        "clo___",
        "CLO_abc_secret",  # the prefix is case sensitive
        "cl_abc_secret",
        "abc_secret",
        " clo_abc_secret",
        "Bearer clo_abc_secret",
    ],
)
def test_bad_shapes(token: str) -> None:
    assert split_token(token) is None


@settings(max_examples=200, deadline=None, database=None)
@given(token_id=st.text("0123456789abcdef", min_size=1, max_size=32), nbytes=st.integers(1, 64))
def test_issued_shape_splits_back(token_id: str, nbytes: int) -> None:
    """Tokens are made as clo_<hex id>_<urlsafe secret>; the secret may contain '_' and '-'."""
    secret = secrets.token_urlsafe(nbytes)
    assert split_token(f"{TOKEN_PREFIX}{token_id}_{secret}") == (token_id, secret)


@settings(max_examples=200, deadline=None, database=None)
@given(token=st.text(max_size=80))
def test_split_never_raises_and_rebuilds(token: str) -> None:
    parts = split_token(token)
    if parts is not None:
        token_id, secret = parts
        assert token_id and secret and "_" not in token_id
        assert f"{TOKEN_PREFIX}{token_id}_{secret}" == token
