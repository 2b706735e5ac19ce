"""Frame classes: wire names, direction tables, immutability, bounds, and the public names."""

from __future__ import annotations

import dataclasses
import re
import typing

import pytest

import protocol
from protocol import (
    CLIENT_FRAMES,
    PROTOCOL_VERSION,
    SERVER_FRAMES,
    ClientFrame,
    ErrorReply,
    EventKind,
    Frame,
    HistoryMode,
    InvitationState,
    JoinPolicy,
    LegalHold,
    MemberAction,
    Privacy,
    ReportReason,
    RequestState,
    Role,
    ServerFrame,
    StreamPosition,
    UserKind,
)
from protocol.frames import MAX_REF_CHARS
from tests.unit.protocol import CLIENT_SAMPLES, SERVER_SAMPLES

# Server replies whose wire name is not the snake_case of the class name, and why.
RENAMED: dict[type[Frame], str] = {
    ErrorReply: "error",  # ``Error`` would shadow the builtin idea of an exception class
}


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@pytest.mark.parametrize("cls", CLIENT_FRAMES + SERVER_FRAMES, ids=lambda c: c.__name__)
def test_type_is_the_snake_case_class_name(cls: type[Frame]) -> None:
    assert RENAMED.get(cls, snake_case(cls.__name__)) == cls.TYPE


def test_renamed_frames_really_differ() -> None:
    for cls, wire_name in RENAMED.items():
        assert cls in SERVER_FRAMES
        assert snake_case(cls.__name__) != wire_name
    assert snake_case("HistoryPage") == "history_page"


@pytest.mark.parametrize("frames", [CLIENT_FRAMES, SERVER_FRAMES], ids=["client", "server"])
def test_types_are_unique_within_a_direction(frames: tuple[type[Frame], ...]) -> None:
    names = [cls.TYPE for cls in frames]
    assert len(names) == len(set(names))
    assert len(set(frames)) == len(frames)
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", name) for name in names)


def test_direction_tables_match_the_unions() -> None:
    assert typing.get_args(ClientFrame) == CLIENT_FRAMES
    assert typing.get_args(ServerFrame) == SERVER_FRAMES
    assert not set(CLIENT_FRAMES) & set(SERVER_FRAMES)


@pytest.mark.parametrize("frame", CLIENT_SAMPLES + SERVER_SAMPLES, ids=lambda f: f.TYPE)
def test_frames_are_frozen_and_slotted(frame: Frame) -> None:
    assert isinstance(frame, Frame)
    assert not hasattr(frame, "__dict__")
    first = dataclasses.fields(frame)[0].name  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(frame, first, getattr(frame, first))


def test_value_objects_are_frozen() -> None:
    position = StreamPosition(offset=1, epoch="e")
    with pytest.raises(dataclasses.FrozenInstanceError):
        position.offset = 2  # type: ignore[misc]
    assert position == StreamPosition(1, "e")
    assert position != StreamPosition(1, "f")
    assert hash(position) == hash(StreamPosition(1, "e"))


def test_a_legal_hold_lives_until_its_end() -> None:
    assert LegalHold(since_ms=10).live(10**15)
    bounded = LegalHold(since_ms=10, until_ms=20)
    assert bounded.live(19) and not bounded.live(20)


@pytest.mark.parametrize("cls", CLIENT_FRAMES, ids=lambda c: c.__name__)
def test_every_client_frame_has_an_optional_bounded_ref(cls: type[Frame]) -> None:
    ref = next(f for f in dataclasses.fields(cls) if f.name == "ref")  # type: ignore[arg-type]
    assert ref.default is None
    assert ref.metadata == {"min_chars": 1, "max_chars": MAX_REF_CHARS}
    assert MAX_REF_CHARS == 64


@pytest.mark.parametrize("cls", CLIENT_FRAMES, ids=lambda c: c.__name__)
def test_client_strings_and_integers_are_bounded(cls: type[Frame]) -> None:
    """Bounded by construction: every str and int a client sends, nested ones included, has
    limits in its metadata."""
    leaves = scalar_leaves(cls, cls.__name__)
    assert leaves  # at least the ref
    unbounded = [path for path, metadata in leaves if not metadata]
    assert unbounded == []


def scalar_leaves(cls: type, path: str) -> list[tuple[str, object]]:
    """(path, metadata) of every str or int field of ``cls``, descending into value objects."""
    hints = typing.get_type_hints(cls)
    out: list[tuple[str, object]] = []
    for f in dataclasses.fields(cls):
        tp = scalar_type(hints[f.name])
        if tp in (str, int):
            out.append((f"{path}.{f.name}", f.metadata))
        elif isinstance(tp, type) and dataclasses.is_dataclass(tp):
            out += scalar_leaves(tp, f"{path}.{f.name}")
    return out


def scalar_type(hint: object) -> object:
    """``str`` for ``SphereId | None`` and the like; other hints come back unchanged."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if len(args) == 1:
        hint = args[0]
    return getattr(hint, "__supertype__", hint)


def test_no_bare_id_fields() -> None:
    """Identifiers are always qualified (``sphere_id``, never ``id``)."""
    classes: set[type] = {*CLIENT_FRAMES, *SERVER_FRAMES}
    for cls in CLIENT_FRAMES + SERVER_FRAMES:
        for hint in typing.get_type_hints(cls).values():
            for candidate in (hint, *typing.get_args(hint)):
                if isinstance(candidate, type) and dataclasses.is_dataclass(candidate):
                    classes.add(candidate)
    names = {f.name for cls in classes for f in dataclasses.fields(cls)}
    assert "id" not in names
    assert {"sphere_id", "user_id", "message_id", "conn_id", "offset", "epoch"} <= names


def test_protocol_version() -> None:
    assert PROTOCOL_VERSION == 1


def test_public_names() -> None:
    assert len(set(protocol.__all__)) == len(protocol.__all__)
    for name in protocol.__all__:
        assert hasattr(protocol, name), name
    exported = {id(getattr(protocol, name)) for name in protocol.__all__}
    for cls in CLIENT_FRAMES + SERVER_FRAMES:
        assert id(cls) in exported, cls.__name__


def test_enum_wire_values() -> None:
    assert [p.value for p in Privacy] == [
        "private",
        "open",
        "public",
        "restricted",
        "direct",
        "global",
    ]
    assert [r.value for r in Role] == ["owner", "admin", "publisher", "member", "visitor"]
    assert [k.value for k in UserKind] == ["human", "bot"]
    assert [h.value for h in HistoryMode] == ["since_joining", "full"]
    assert [j.value for j in JoinPolicy] == ["free", "approval", "invitation"]
    assert [k.value for k in EventKind] == [
        "post",
        "edit",
        "delete",
        "member",
        "sphere",
        "react",
        "unreact",
        "pin",
        "unpin",
    ]
    assert [a.value for a in MemberAction] == [
        "joined",
        "left",
        "added",
        "removed",
        "role_changed",
        "accepted",
        "admitted",
        "banned",
        "unbanned",
        "muted",
        "unmuted",
        "deleted",
        "appointed",
    ]
    assert [a for a in MemberAction if a.ends_membership] == [
        MemberAction.LEFT,
        MemberAction.REMOVED,
        MemberAction.BANNED,
        MemberAction.DELETED,
    ]
    assert [r.value for r in ReportReason] == ["spam", "abusive", "other"]
    assert [s.value for s in InvitationState] == [
        "pending",
        "accepted",
        "declined",
        "revoked",
        "expired",
    ]
    assert [s.value for s in RequestState] == ["pending", "accepted", "refused", "withdrawn"]


def test_role_rank_orders_roles_by_power() -> None:
    ranks = [role.rank for role in Role]
    assert ranks == sorted(ranks, reverse=True)
    assert len(set(ranks)) == len(ranks)
    assert Role.VISITOR.rank > 0
    assert sorted(Role, key=lambda r: r.rank, reverse=True) == list(Role)
