"""The codecs: round trips in both encodings, batching, and every way an inbound frame is refused.

Decoding is the trust boundary of the server, so most tests here feed it something wrong and
check that the answer is a ``ProtocolViolation`` whose message names the offending field.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable
from typing import Any

import msgpack
import orjson
import pytest
from hypothesis import given, settings, strategies as st

from protocol import (
    CLIENT_FRAMES,
    CODECS,
    DEFAULT_MAX_FRAME_BYTES,
    MAX_SERVER_FRAME_BYTES,
    SERVER_FRAMES,
    AddMember,
    Auth,
    Batch,
    Codec,
    CreateSphere,
    Delete,
    Edit,
    ErrorCode,
    Frame,
    FrameTooLarge,
    History,
    Join,
    JsonCodec,
    ListSpheres,
    MarkRead,
    MsgpackCodec,
    Ok,
    Ping,
    Pong,
    Privacy,
    ProtocolViolation,
    Publish,
    StreamPosition,
    Subscribe,
    UpdateSphere,
    Welcome,
    Wire,
    codec_for,
    decode_client_map,
    to_wire,
)
from protocol.codec import _Schema
from protocol.frames import MAX_OFFSET
from tests.unit.protocol import (
    CLIENT_MINIMAL,
    CLIENT_SAMPLES,
    LIMITS,
    POST,
    SERVER_MINIMAL,
    SERVER_SAMPLES,
)

Decode = Callable[[Wire], Frame]

ALL_CLIENT = CLIENT_SAMPLES + CLIENT_MINIMAL
ALL_SERVER = SERVER_SAMPLES + SERVER_MINIMAL


@pytest.fixture(params=[JsonCodec, MsgpackCodec], ids=["json", "msgpack"])
def codec(request: pytest.FixtureRequest) -> Codec:
    codec_cls: type[Codec] = request.param
    return codec_cls()


def dump(codec: Codec, value: Any) -> Wire:
    """Encode an arbitrary (possibly invalid) map the way ``codec`` puts frames on the wire."""
    if isinstance(codec, JsonCodec):
        return orjson.dumps(value).decode()
    packed: bytes = msgpack.packb(value)
    return packed


def load(codec: Codec, wire: Wire) -> Any:
    if isinstance(wire, str):
        return orjson.loads(wire)
    return msgpack.unpackb(wire)


def resized(codec: Codec, max_frame_bytes: int) -> Codec:
    """The same encoding with another frame size limit."""
    return codec_for(codec.subprotocol, max_frame_bytes)


def violation(decode: Callable[[Any], Frame], data: Any) -> ProtocolViolation:
    with pytest.raises(ProtocolViolation) as info:
        decode(data)
    return info.value


def frame_id(frame: Frame) -> str:
    return type(frame).__name__


def field_hints(frame: Frame) -> dict[str, Any]:
    return typing.get_type_hints(type(frame))


def unwrap(hint: Any) -> Any:
    """The type under ``X | None`` and ``NewType``; a frame union is returned as it is."""
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) > 1:
            return hint
        hint = args[0]
    while hasattr(hint, "__supertype__"):
        hint = hint.__supertype__
    return hint


def wrong_values(hint: Any) -> list[Any]:
    """Values of the wrong wire type for a field annotated ``hint``."""
    tp = unwrap(hint)
    if typing.get_origin(tp) is list:
        return ["x", {"a": 1}, 1, True]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        first = next(iter(tp))
        return ["no-such-member", first.name, 1, True, [first.value]]
    if tp is bool:
        return [1, 0, "true", 1.0, []]
    if tp is int:
        return ["1", 1.5, 1.0, True, False, [1], {"n": 1}]
    if tp is float:
        return ["1.5", True, [1.0]]
    if tp is str:
        return [5, 1.5, True, ["a"], {"a": "b"}]
    assert dataclasses.is_dataclass(tp), f"no wrong values for {hint}"
    return ["x", 5, True, ["a"]]


def optional_fields(frame: Frame) -> list[dataclasses.Field[Any]]:
    return [
        f
        for f in dataclasses.fields(frame)  # type: ignore[arg-type]
        if f.default is not dataclasses.MISSING
    ]


def required_fields(frame: Frame) -> list[dataclasses.Field[Any]]:
    """Fields without a default that may not be None (absent: None for the others)."""
    hints = field_hints(frame)
    return [
        f
        for f in dataclasses.fields(frame)  # type: ignore[arg-type]
        if f.default is dataclasses.MISSING and type(None) not in typing.get_args(hints[f.name])
    ]


def test_a_message_without_author_decodes_with_author_none(codec: Codec) -> None:
    """``author_id`` absent or null: an event without an author (a deleted account's)."""
    wire_map = to_wire(POST)
    del wire_map["author_id"]
    assert codec.decode_server(dump(codec, wire_map)) == dataclasses.replace(POST, author_id=None)
    wire_map["author_id"] = None
    assert codec.decode_server(dump(codec, wire_map)) == dataclasses.replace(POST, author_id=None)


def field_cases(samples: tuple[Frame, ...]) -> list[Any]:
    return [
        pytest.param(frame, f.name, id=f"{frame_id(frame)}.{f.name}")
        for frame in samples
        for f in dataclasses.fields(frame)  # type: ignore[arg-type]
    ]


# ---------------------------------------------------------------------------------------------
# Round trips


def test_samples_cover_every_frame_class() -> None:
    for samples in (CLIENT_SAMPLES, CLIENT_MINIMAL):
        assert [type(f) for f in samples] == list(CLIENT_FRAMES)
    for samples in (SERVER_SAMPLES, SERVER_MINIMAL):
        assert [type(f) for f in samples] == list(SERVER_FRAMES)


@pytest.mark.parametrize("frame", ALL_CLIENT, ids=frame_id)
def test_client_frame_round_trip(codec: Codec, frame: Frame) -> None:
    wire = codec.encode(frame)
    assert isinstance(wire, bytes if codec.binary else str)
    decoded = codec.decode_client(wire)
    assert type(decoded) is type(frame)
    assert decoded == frame


@pytest.mark.parametrize("frame", ALL_SERVER, ids=frame_id)
def test_server_frame_round_trip(codec: Codec, frame: Frame) -> None:
    wire = codec.encode(frame)
    assert isinstance(wire, bytes if codec.binary else str)
    decoded = codec.decode_server(wire)
    assert type(decoded) is type(frame)
    assert decoded == frame


@pytest.mark.parametrize("frame", ALL_CLIENT + ALL_SERVER, ids=frame_id)
def test_none_fields_are_omitted_on_the_wire(codec: Codec, frame: Frame) -> None:
    wire_map = load(codec, codec.encode(frame))
    expected_keys = {"type"} | {
        f.name
        for f in dataclasses.fields(frame)  # type: ignore[arg-type]
        if getattr(frame, f.name) is not None
    }
    assert wire_map["type"] == frame.TYPE
    assert set(wire_map) == expected_keys
    assert None not in wire_map.values()


def test_wire_map_shape_of_nested_values(codec: Codec) -> None:
    subscribe = Subscribe(sphere_id="s", since=StreamPosition(offset=3, epoch="e"))  # type: ignore[arg-type]
    assert load(codec, codec.encode(subscribe)) == {
        "type": "subscribe",
        "sphere_id": "s",
        "since": {"offset": 3, "epoch": "e"},
    }
    welcome = next(f for f in SERVER_SAMPLES if isinstance(f, Welcome))
    limits = load(codec, codec.encode(welcome))["limits"]
    assert "type" not in limits  # value objects are plain maps, only frames carry a type
    assert limits["publish_rate_per_s"] == 2.5
    created = load(codec, codec.encode(CreateSphere(name="n", privacy=Privacy.OPEN)))
    assert created == {"type": "create_sphere", "name": "n", "privacy": "open"}
    assert load(codec, codec.encode(Ok())) == {"type": "ok"}


@pytest.mark.parametrize(
    ("frame", "name"),
    [
        pytest.param(frame, f.name, id=f"{frame_id(frame)}.{f.name}")
        for frame in CLIENT_SAMPLES + SERVER_SAMPLES
        for f in optional_fields(frame)
    ],
)
def test_explicit_null_means_the_default(codec: Codec, frame: Frame, name: str) -> None:
    wire_map = to_wire(frame)
    wire_map[name] = None
    default = next(f.default for f in optional_fields(frame) if f.name == name)
    expected = dataclasses.replace(frame, **{name: default})  # type: ignore[type-var]
    decode = codec.decode_client if type(frame) in CLIENT_FRAMES else codec.decode_server
    assert decode(dump(codec, wire_map)) == expected


def test_decode_client_map_validates_like_the_codecs() -> None:
    assert decode_client_map({"type": "ping"}) == Ping()
    assert decode_client_map(to_wire(CLIENT_SAMPLES[0])) == CLIENT_SAMPLES[0]
    assert violation(decode_client_map, ["ping"]).message == "frame: expected a map"
    assert violation(decode_client_map, {"type": "ok"}).message == "unknown frame type 'ok'"


def test_directions_are_separate(codec: Codec) -> None:
    """A server frame is not a client frame and vice versa, even when its map is valid."""
    assert violation(codec.decode_client, codec.encode(Ok())).message == "unknown frame type 'ok'"
    assert (
        violation(codec.decode_server, codec.encode(Ping())).message == "unknown frame type 'ping'"
    )
    # ``frames`` of a batch holds server frames only.
    inner = violation(
        codec.decode_server, dump(codec, {"type": "batch", "frames": [{"type": "ping"}]})
    )
    assert inner.message == "frames[0]: unknown frame type 'ping'"


def test_codec_registry() -> None:
    assert JsonCodec.subprotocol == "cloison.v1.json"
    assert MsgpackCodec.subprotocol == "cloison.v1.msgpack"
    assert (JsonCodec.binary, MsgpackCodec.binary) == (False, True)
    assert {"cloison.v1.json": JsonCodec, "cloison.v1.msgpack": MsgpackCodec} == CODECS
    for subprotocol, codec_cls in CODECS.items():
        made = codec_for(subprotocol, max_frame_bytes=123)
        assert type(made) is codec_cls
        assert made.max_frame_bytes == 123
        assert codec_for(subprotocol).max_frame_bytes == DEFAULT_MAX_FRAME_BYTES  # type: ignore[attr-defined]
    with pytest.raises(KeyError):
        codec_for("cloison.v2.json")


def test_to_wire_is_stable_across_calls() -> None:
    """The per-class field cache gives the same map on the first and later calls."""
    frame = CLIENT_SAMPLES[2]
    assert to_wire(frame) == to_wire(frame) == orjson.loads(JsonCodec().encode(frame))


# ---------------------------------------------------------------------------------------------
# Batches


def test_batch_of_encoded_frames_equals_a_batch_frame(codec: Codec) -> None:
    leaves = [f for f in SERVER_SAMPLES if not isinstance(f, Batch)]
    big = resized(codec, 1 << 20)
    parts = [big.encode(f) for f in leaves]
    expected = Batch(frames=leaves)  # type: ignore[arg-type]
    assert big.decode_server(big.batch(parts)) == expected
    assert big.decode_server(big.encode(expected)) == expected


def test_batches_do_not_nest(codec: Codec) -> None:
    inner = codec.batch([codec.encode(Ok(ref="a")), codec.encode(Pong(server_time_ms=1))])
    outer = codec.batch([inner, codec.encode(Ok())])
    exc = violation(codec.decode_server, outer)
    assert exc.message == "frames[0]: a batch cannot contain a batch"
    assert codec.decode_server(codec.batch([])) == Batch(frames=[])


def test_json_batch_accepts_bytes_parts() -> None:
    codec = JsonCodec()
    parts: list[Wire] = [orjson.dumps(to_wire(Ok(ref="x"))), codec.encode(Ok())]
    assert codec.decode_server(codec.batch(parts)) == Batch(frames=[Ok(ref="x"), Ok()])


# MessagePack arrays change header at 16 (fixarray -> array 16) and 65536 (-> array 32) items.
@pytest.mark.parametrize("count", [0, 1, 15, 16, 17, 65535, 65536])
def test_batch_array_header_boundaries(codec: Codec, count: int) -> None:
    big = resized(codec, 16 << 20)
    part = big.encode(Ok())
    wire = big.batch([part] * count)
    reference = {"type": "batch", "frames": [{"type": "ok"}] * count}
    # The reference encoder writes the same bytes, so any decoder agrees with ours.
    if isinstance(big, MsgpackCodec):
        assert wire == msgpack.packb(reference)
    else:
        assert wire == orjson.dumps(reference).decode()
    decoded = big.decode_server(wire)
    assert isinstance(decoded, Batch)
    assert len(decoded.frames) == count
    assert all(f == Ok() for f in decoded.frames)


# ---------------------------------------------------------------------------------------------
# Refusals: the frame as a whole


@pytest.mark.parametrize(
    "data",
    ["", "{", "nul", '{"type": "ping"', '{"type":"ping"}x', b"\xff", "{'type': 'ping'}", "[1,]"],
)
def test_invalid_json(data: Wire) -> None:
    exc = violation(JsonCodec().decode_client, data)
    assert exc.message == "frame is not valid JSON"
    assert exc.code is ErrorCode.BAD_FRAME


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # never used
        msgpack.packb({"type": "ping"})[:-1],  # truncated
        msgpack.packb({"type": "ping"}) + b"\x00",  # trailing data
        b"\x81\x01\xc0",  # integer map key
        b"\xa1\xff",  # string that is not UTF-8
        b"\xdd\xff\xff\xff\xff",  # array header promising 4 billion items
        b"\x91" * 5000,  # nested deeper than the unpacker allows
        b"\xd6\xff\x00",  # timestamp extension, truncated
    ],
)
def test_invalid_msgpack(data: bytes) -> None:
    exc = violation(MsgpackCodec().decode_client, data)
    assert exc.message == "frame is not valid MessagePack"
    assert exc.code is ErrorCode.BAD_FRAME


@pytest.mark.parametrize("value", [[], [{"type": "ping"}], 1, 1.5, "ping", None, True])
def test_frame_that_is_not_a_map(codec: Codec, value: Any) -> None:
    for decode in (codec.decode_client, codec.decode_server):
        exc = violation(decode, dump(codec, value))
        assert exc.message == "frame: expected a map"
        assert exc.code is ErrorCode.BAD_FRAME


@pytest.mark.parametrize(
    "value",
    [{}, {"ref": "r"}, {"type": None}, {"type": 5}, {"type": True}, {"type": ["ping"]}],
    ids=["empty", "no-type", "null", "int", "bool", "list"],
)
def test_missing_or_non_string_type(codec: Codec, value: dict[str, Any]) -> None:
    exc = violation(codec.decode_client, dump(codec, value))
    assert exc.message == "type: missing or not a string"
    assert exc.code is ErrorCode.BAD_FRAME


def test_unknown_type(codec: Codec) -> None:
    exc = violation(codec.decode_client, dump(codec, {"type": "frobnicate"}))
    assert exc.message == "unknown frame type 'frobnicate'"
    assert exc.code is ErrorCode.BAD_FRAME
    assert violation(codec.decode_client, dump(codec, {"type": "Ping"})).message == (
        "unknown frame type 'Ping'"
    )
    # A hostile type name is cut, so the message stays short enough to log.
    long = violation(codec.decode_client, dump(codec, {"type": "x" * 10_000}))
    assert len(long.message) < 80


def test_msgpack_extension_types_are_refused() -> None:
    codec = MsgpackCodec()
    for value in (
        {"type": "ping", "ref": msgpack.ExtType(5, b"r1")},
        msgpack.ExtType(1, b""),
        {"type": msgpack.ExtType(0, b"ping")},
    ):
        exc = violation(codec.decode_client, msgpack.packb(value))
        assert exc.message == "MessagePack extension types are not allowed"
        assert exc.code is ErrorCode.BAD_FRAME


def test_msgpack_timestamps_are_refused_as_values() -> None:
    """The unpacker decodes extension -1 itself; the field check still refuses it."""
    stamp = msgpack.Timestamp(1, 0)
    codec = MsgpackCodec()
    assert violation(
        codec.decode_client, msgpack.packb({"type": "ping", "ref": stamp})
    ).message == ("ref: expected a string")
    assert violation(codec.decode_client, msgpack.packb({"type": stamp})).message == (
        "type: missing or not a string"
    )


def test_msgpack_bytes_are_not_strings() -> None:
    codec = MsgpackCodec()
    exc = violation(codec.decode_client, msgpack.packb({"type": "join", "sphere_id": b"s"}))
    assert exc.message == "sphere_id: expected a string"
    exc = violation(codec.decode_client, msgpack.packb({"type": b"ping"}))
    assert exc.message == "type: missing or not a string"
    exc = violation(codec.decode_client, msgpack.packb({"type": "ping", b"ref": "r"}))
    assert exc.message == "frame: unexpected field \"b'ref'\""


def test_text_frame_on_msgpack() -> None:
    exc = violation(MsgpackCodec().decode_client, '{"type":"ping"}')
    assert exc.message == "MessagePack frames must be binary messages"
    assert exc.code is ErrorCode.BAD_FRAME
    assert violation(MsgpackCodec().decode_server, "").code is ErrorCode.BAD_FRAME


def test_json_accepts_bytes_as_well_as_text() -> None:
    assert JsonCodec().decode_client(b'{"type":"ping","ref":"r"}') == Ping(ref="r")


def wire_size(wire: Wire) -> int:
    return len(wire.encode() if isinstance(wire, str) else wire)


def padded(codec: Codec, size: int, frame_type: str = "ping") -> Wire:
    """A frame with an extra field, whose encoding is exactly ``size`` bytes."""
    empty = wire_size(dump(codec, {"type": frame_type, "zzz": ""}))
    for header_growth in range(6):  # a longer MessagePack string may need a longer header
        wire = dump(codec, {"type": frame_type, "zzz": "x" * (size - empty - header_growth)})
        if wire_size(wire) == size:
            return wire
    raise AssertionError(f"cannot pad a {frame_type} to {size} bytes")


@pytest.mark.parametrize("limit", [64, 300, DEFAULT_MAX_FRAME_BYTES])
def test_client_frame_size_limit(codec: Codec, limit: int) -> None:
    sized = resized(codec, limit)
    # At the limit the frame is parsed (and refused for its extra field, not for its size).
    at_limit = padded(sized, limit)
    assert violation(sized.decode_client, at_limit).message == "frame: unexpected field 'zzz'"
    exc = violation(sized.decode_client, padded(sized, limit + 1))
    assert isinstance(exc, FrameTooLarge)
    assert exc.code is ErrorCode.TOO_LARGE
    assert exc.message == f"frame of {limit + 1} bytes exceeds {limit}"


def test_server_frame_size_limit_is_fixed(codec: Codec) -> None:
    """Clients accept any frame the server may send (up to 1 MiB), whatever their own limit."""
    assert MAX_SERVER_FRAME_BYTES == 1 << 20
    sized = resized(codec, 64)
    # The padding is an unknown field, which server frames may carry: the frame decodes.
    assert sized.decode_server(padded(sized, 65, "ok")) == Ok()
    assert sized.decode_server(padded(sized, MAX_SERVER_FRAME_BYTES, "ok")) == Ok()
    exc = violation(sized.decode_server, padded(sized, MAX_SERVER_FRAME_BYTES + 1, "ok"))
    assert isinstance(exc, FrameTooLarge)
    assert exc.code is ErrorCode.TOO_LARGE
    assert exc.message == f"frame of {MAX_SERVER_FRAME_BYTES + 1} bytes exceeds 1048576"


def test_default_frame_size_limit(codec: Codec) -> None:
    publish = Publish(sphere_id="s", message_id="m", body="x" * DEFAULT_MAX_FRAME_BYTES)  # type: ignore[arg-type]
    exc = violation(codec.decode_client, codec.encode(publish))
    assert exc.code is ErrorCode.TOO_LARGE


def test_json_size_counts_utf8_bytes_not_characters() -> None:
    codec = JsonCodec(max_frame_bytes=100)
    wire = orjson.dumps({"type": "publish", "sphere_id": "s", "message_id": "m", "body": "é" * 30})
    text = wire.decode()
    assert len(text) <= 100 < len(wire)
    assert violation(codec.decode_client, text).code is ErrorCode.TOO_LARGE
    assert violation(codec.decode_client, wire).code is ErrorCode.TOO_LARGE


# ---------------------------------------------------------------------------------------------
# Refusals: one field


@pytest.mark.parametrize(("frame", "name"), field_cases(CLIENT_SAMPLES))
def test_client_field_of_the_wrong_type(codec: Codec, frame: Frame, name: str) -> None:
    _check_wrong_types(codec, codec.decode_client, frame, name)


@pytest.mark.parametrize(("frame", "name"), field_cases(SERVER_SAMPLES))
def test_server_field_of_the_wrong_type(codec: Codec, frame: Frame, name: str) -> None:
    _check_wrong_types(codec, codec.decode_server, frame, name)


def _check_wrong_types(codec: Codec, decode: Decode, frame: Frame, name: str) -> None:
    for wrong in wrong_values(field_hints(frame)[name]):
        wire_map = to_wire(frame)
        wire_map[name] = wrong
        exc = violation(decode, dump(codec, wire_map))
        assert exc.message.startswith(f"{name}: expected "), (wrong, exc.message)
        assert exc.code is ErrorCode.BAD_FRAME
        # The ref is echoed when it is itself valid; a bad ref is never echoed.
        assert exc.ref == (None if name == "ref" else getattr(frame, "ref", None))


@pytest.mark.parametrize(
    ("frame", "name"),
    [
        pytest.param(frame, f.name, id=f"{frame_id(frame)}.{f.name}")
        for frame in CLIENT_SAMPLES + SERVER_SAMPLES
        for f in required_fields(frame)
    ],
)
def test_required_field_missing_or_null(codec: Codec, frame: Frame, name: str) -> None:
    decode = codec.decode_client if type(frame) in CLIENT_FRAMES else codec.decode_server
    wire_map = to_wire(frame)
    del wire_map[name]
    exc = violation(decode, dump(codec, wire_map))
    assert exc.message == f"{name}: missing"
    assert exc.ref == getattr(frame, "ref", None)
    wire_map[name] = None
    assert violation(decode, dump(codec, wire_map)).message.startswith(f"{name}: expected ")


@pytest.mark.parametrize("frame", CLIENT_SAMPLES, ids=frame_id)
def test_extra_field_in_a_client_frame_is_refused(codec: Codec, frame: Frame) -> None:
    exc = violation(codec.decode_client, dump(codec, {**to_wire(frame), "sphere_name": "extra"}))
    assert exc.message == "frame: unexpected field 'sphere_name'"
    assert exc.ref == getattr(frame, "ref", None)


@pytest.mark.parametrize("frame", SERVER_SAMPLES, ids=frame_id)
def test_extra_field_in_a_server_frame_is_ignored(codec: Codec, frame: Frame) -> None:
    """A newer server may add fields; clients built on this codec keep working."""
    assert codec.decode_server(dump(codec, {**to_wire(frame), "sphere_name": "extra"})) == frame


def test_extra_field_name_is_cut_in_the_message(codec: Codec) -> None:
    exc = violation(codec.decode_client, dump(codec, {"type": "ping", "k" * 5000: 1}))
    assert len(exc.message) < 80


def bounded_cases() -> list[Any]:
    cases = []
    for frame in CLIENT_SAMPLES:
        for f in dataclasses.fields(frame):  # type: ignore[arg-type]
            if f.metadata:
                cases.append(pytest.param(frame, f.name, id=f"{frame_id(frame)}.{f.name}"))
    return cases


@pytest.mark.parametrize(("frame", "name"), bounded_cases())
def test_bounds_from_field_metadata(frame: Frame, name: str) -> None:
    """Every bounded field refuses one past each bound and accepts the bound itself."""
    bounds = next(f.metadata for f in dataclasses.fields(frame) if f.name == name)  # type: ignore[arg-type]
    if "max_items" in bounds:  # a list: its length, then each item's bounds
        few, many, longest = bounds["min_items"], bounds["max_items"], bounds["max_chars"]
        accepted = [["x"] * few, ["x"] * many, ["é" * longest]]
        refused_lists = [
            (["x"] * (few - 1), f"{name}: at least {few} items"),
            (["x"] * (many + 1), f"{name}: at most {many} items"),
            (["x", ""], f"{name}[1]: must not be empty"),
            (["x" * (longest + 1)], f"{name}[0]: longer than {longest} characters"),
        ]
        for value in accepted:
            assert getattr(decode_client_map({**to_wire(frame), name: value}), name) == value
        for value, message in refused_lists:
            assert violation(decode_client_map, {**to_wire(frame), name: value}).message == message
        return
    if "max_chars" in bounds:
        low, high = bounds["min_chars"], bounds["max_chars"]
        accepted: list[Any] = ["x" * low, "é" * high]
        refused = {"x" * (high + 1): f"{name}: longer than {high} characters"}
        if low:  # text that may be empty (a charter's: empty removes it) has no lower bound
            refused[""] = f"{name}: must not be empty"
        assert low in (0, 1)
    else:
        low, high = bounds["ge"], bounds["le"]
        accepted = [low, high]
        refused = {v: f"{name}: must be between {low} and {high}" for v in (low - 1, high + 1)}
    for value in accepted:
        wire_map = {**to_wire(frame), name: value}
        assert getattr(decode_client_map(wire_map), name) == value
    for value, message in refused.items():
        exc = violation(decode_client_map, {**to_wire(frame), name: value})
        assert exc.message == message
        assert exc.code is ErrorCode.BAD_FRAME
        if name != "ref":  # an invalid ref is not echoed: see test_invalid_ref_is_not_echoed
            assert exc.ref == getattr(frame, "ref", None)


# The documented limits, spelled out so that changing one is a visible wire change.
@pytest.mark.parametrize(
    ("frame", "name", "max_chars"),
    [
        (Ping(), "ref", 64),
        (Auth(token="t", protocol=1), "token", 256),
        (Join(sphere_id="s"), "sphere_id", 64),  # type: ignore[arg-type]
        (Publish(sphere_id="s", message_id="m", body="b"), "message_id", 64),  # type: ignore[arg-type]
        (CreateSphere(name="n"), "name", 100),
        (UpdateSphere(sphere_id="s"), "name", 100),  # type: ignore[arg-type]
        (AddMember(sphere_id="s", user_id="u"), "user_id", 64),  # type: ignore[arg-type]
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_documented_string_limits(codec: Codec, frame: Frame, name: str, max_chars: int) -> None:
    ok = {**to_wire(frame), name: "ü" * max_chars}  # characters, not bytes
    assert getattr(codec.decode_client(dump(codec, ok)), name) == "ü" * max_chars
    for bad, message in (
        ("ü" * (max_chars + 1), f"{name}: longer than {max_chars} characters"),
        ("", f"{name}: must not be empty"),
    ):
        exc = violation(codec.decode_client, dump(codec, {**to_wire(frame), name: bad}))
        assert exc.message == message


def test_body_limit_is_a_mebibyte_of_characters() -> None:
    frame = Publish(sphere_id="s", message_id="m", body="b")  # type: ignore[arg-type]
    assert decode_client_map({**to_wire(frame), "body": "b" * (1 << 20)}).body == "b" * (1 << 20)  # type: ignore[attr-defined]
    exc = violation(decode_client_map, {**to_wire(frame), "body": "b" * ((1 << 20) + 1)})
    assert exc.message == "body: longer than 1048576 characters"


@pytest.mark.parametrize(
    ("frame", "name", "low", "high"),
    [
        (Auth(token="t", protocol=1), "protocol", 1, 1000),
        (Edit(sphere_id="s", message_id="m", target=1, body="b"), "target", 1, MAX_OFFSET),  # type: ignore[arg-type]
        (Delete(sphere_id="s", message_id="m", target=1), "target", 1, MAX_OFFSET),  # type: ignore[arg-type]
        (History(sphere_id="s"), "before", 1, MAX_OFFSET),  # type: ignore[arg-type]
        (History(sphere_id="s"), "after", 0, MAX_OFFSET),  # type: ignore[arg-type]
        (History(sphere_id="s"), "limit", 1, 200),  # type: ignore[arg-type]
        (MarkRead(sphere_id="s", offset=0), "offset", 0, MAX_OFFSET),  # type: ignore[arg-type]
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_documented_integer_limits(
    codec: Codec, frame: Frame, name: str, low: int, high: int
) -> None:
    assert MAX_OFFSET == 2**63 - 1
    for good in (low, high):
        assert (
            getattr(codec.decode_client(dump(codec, {**to_wire(frame), name: good})), name) == good
        )
    for bad in (low - 1, high + 1, -(2**63)):
        exc = violation(codec.decode_client, dump(codec, {**to_wire(frame), name: bad}))
        assert exc.message == f"{name}: must be between {low} and {high}"
    # A boolean is not an integer, although Python says it is.
    exc = violation(codec.decode_client, dump(codec, {**to_wire(frame), name: True}))
    assert exc.message == f"{name}: expected an integer"


def test_integer_beyond_64_bits_in_json() -> None:
    data = '{"type":"mark_read","sphere_id":"s","offset":' + "9" * 30 + "}"
    assert violation(JsonCodec().decode_client, data).code is ErrorCode.BAD_FRAME


def test_float_field_accepts_integers_but_not_booleans(codec: Codec) -> None:
    welcome = next(f for f in SERVER_SAMPLES if isinstance(f, Welcome))
    wire_map = to_wire(welcome)
    wire_map["limits"] = {**wire_map["limits"], "publish_rate_per_s": 3}
    decoded = codec.decode_server(dump(codec, wire_map))
    assert isinstance(decoded, Welcome)
    assert decoded.limits == dataclasses.replace(LIMITS, publish_rate_per_s=3.0)
    assert type(decoded.limits.publish_rate_per_s) is float
    wire_map["limits"] = {**wire_map["limits"], "publish_rate_per_s": False}
    exc = violation(codec.decode_server, dump(codec, wire_map))
    assert exc.message == "limits.publish_rate_per_s: expected a number"


def test_enum_values_are_lowercase_wire_strings(codec: Codec) -> None:
    frame = {"type": "create_sphere", "name": "n", "privacy": "PRIVATE"}
    exc = violation(codec.decode_client, dump(codec, frame))
    assert exc.message == "privacy: expected one of " + ", ".join(p.value for p in Privacy)
    decoded = codec.decode_client(dump(codec, {**frame, "privacy": "public"}))
    assert decoded == CreateSphere(name="n", privacy=Privacy.PUBLIC)


def test_default_of_a_boolean_field(codec: Codec) -> None:
    assert codec.decode_client(dump(codec, {"type": "list_spheres"})) == ListSpheres(discover=False)


# ---------------------------------------------------------------------------------------------
# Refusals: nested values name their path


@pytest.mark.parametrize(
    ("decode_side", "value", "message"),
    [
        (
            "client",
            {"type": "subscribe", "sphere_id": "s", "since": {"offset": "1", "epoch": "e"}},
            "since.offset: expected an integer",
        ),
        (
            "client",
            {"type": "subscribe", "sphere_id": "s", "since": {"offset": 1}},
            "since.epoch: missing",
        ),
        (
            "client",
            {"type": "subscribe", "sphere_id": "s", "since": {"offset": 1, "epoch": "e", "x": 1}},
            "since: unexpected field 'x'",
        ),
        (
            "client",
            {"type": "subscribe", "sphere_id": "s", "since": [1, "e"]},
            "since: expected a map",
        ),
        (
            "server",
            {"type": "history_page", "sphere_id": "s", "has_more": False, "messages": [{}]},
            "messages[0].sphere_id: missing",
        ),
        (
            "server",
            {"type": "history_page", "sphere_id": "s", "has_more": False, "messages": {}},
            "messages: expected an array",
        ),
        (
            "server",
            {
                "type": "subscribed",
                "sphere_id": "s",
                "online": ["u", 2],
                "position": {"offset": 0, "epoch": "e"},
            },
            "online[1]: expected a string",
        ),
        (
            "server",
            {
                "type": "sphere_list",
                "spheres": [
                    {"sphere_id": "s", "name": "n", "privacy": "closed", "epoch": "e", "offset": 0}
                ],
            },
            "spheres[0].privacy: expected one of " + ", ".join(p.value for p in Privacy),
        ),
        (
            "server",
            {
                "type": "member_list",
                "sphere_id": "s",
                "members": [{"user_id": "u", "name": "n", "kind": "robot", "role": "member"}],
            },
            "members[0].kind: expected one of human, bot",
        ),
        (
            "server",
            {"type": "batch", "frames": [{"type": "ok"}, {"type": "ok"}, {"ref": "r"}]},
            "frames[2].type: missing or not a string",
        ),
        (
            "server",
            {"type": "batch", "frames": [{"type": "pong", "server_time_ms": "now"}]},
            "frames[0].server_time_ms: expected an integer",
        ),
        ("server", {"type": "batch", "frames": ["ok"]}, "frames[0]: expected a map"),
        (
            "server",
            {"type": "batch", "frames": [{"type": "nope"}]},
            "frames[0]: unknown frame type 'nope'",
        ),
        ("server", {"type": "batch", "frames": {"type": "ok"}}, "frames: expected an array"),
        ("server", {"type": "sphere_info", "sphere": None}, "sphere: expected a map"),
    ],
)
def test_nested_errors_name_their_path(
    codec: Codec, decode_side: str, value: dict[str, Any], message: str
) -> None:
    decode = codec.decode_client if decode_side == "client" else codec.decode_server
    assert violation(decode, dump(codec, value)).message == message


def test_inner_frame_ref_is_carried_from_a_batch(codec: Codec) -> None:
    data = {"type": "batch", "frames": [{"type": "pong", "server_time_ms": "now", "ref": "in"}]}
    assert violation(codec.decode_server, dump(codec, data)).ref == "in"


# ---------------------------------------------------------------------------------------------
# The ref of a refused frame


@pytest.mark.parametrize(
    ("ref", "carried"),
    [
        ("r-1", "r-1"),
        ("x" * 64, "x" * 64),
        ("x" * 65, None),
        (7, None),
        (None, None),
        (["r"], None),
    ],
    ids=["short", "at-limit", "too-long", "int", "null", "list"],
)
def test_ref_is_carried_only_when_valid(codec: Codec, ref: Any, carried: str | None) -> None:
    data = {"type": "join", "sphere_id": "", "ref": ref}
    exc = violation(codec.decode_client, dump(codec, data))
    assert exc.message == "sphere_id: must not be empty"
    assert exc.ref == carried


def test_invalid_ref_is_not_echoed(codec: Codec) -> None:
    exc = violation(codec.decode_client, dump(codec, {"type": "ping", "ref": ""}))
    assert exc.message == "ref: must not be empty"
    assert exc.ref is None


def test_ref_is_not_carried_by_a_valid_frame() -> None:
    frame = JsonCodec().decode_client('{"type":"ping","ref":"r"}')
    assert frame == Ping(ref="r")
    assert ProtocolViolation("x").ref is None


@pytest.mark.parametrize(
    "data", [{"type": "frobnicate", "ref": "r1"}, {"ref": "r1"}], ids=["unknown", "missing"]
)
def test_ref_is_carried_when_the_type_is_bad(codec: Codec, data: dict[str, Any]) -> None:
    assert violation(codec.decode_client, dump(codec, data)).ref == "r1"


OFFSET_RANGE = f"must be between 0 and {MAX_OFFSET}"


@pytest.mark.parametrize(
    ("since", "message"),
    [
        ({"offset": -1, "epoch": "e"}, f"since.offset: {OFFSET_RANGE}"),
        ({"offset": MAX_OFFSET + 1, "epoch": "e"}, f"since.offset: {OFFSET_RANGE}"),
        ({"offset": 1, "epoch": ""}, "since.epoch: must not be empty"),
        ({"offset": 1, "epoch": "e" * 65}, "since.epoch: longer than 64 characters"),
    ],
    ids=["negative", "past-int64", "empty-epoch", "long-epoch"],
)
def test_since_is_bounded(codec: Codec, since: dict[str, Any], message: str) -> None:
    data = {"type": "subscribe", "sphere_id": "s", "since": since, "ref": "r"}
    exc = violation(codec.decode_client, dump(codec, data))
    assert exc.message == message
    assert exc.ref == "r"


def test_since_at_its_bounds(codec: Codec) -> None:
    for offset, epoch in ((0, "e"), (MAX_OFFSET, "é" * 64)):
        data = {"type": "subscribe", "sphere_id": "s", "since": {"offset": offset, "epoch": epoch}}
        frame = codec.decode_client(dump(codec, data))
        assert frame == Subscribe(sphere_id="s", since=StreamPosition(offset, epoch))  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["\x00", "a\x00b", "x" * 10 + "\x00"])
def test_nul_characters_are_refused_in_any_string(codec: Codec, text: str) -> None:
    """No store keeps NUL in text, so the wire refuses it wherever a string travels."""
    data = {"type": "publish", "sphere_id": "s", "message_id": "m", "body": text, "ref": "r"}
    exc = violation(codec.decode_client, dump(codec, data))
    assert exc.message == "body: must not contain NUL characters"
    assert exc.ref == "r"


def test_lone_surrogate_in_text_frame() -> None:
    violation(JsonCodec().decode_client, '{"type":"ping","ref":"\ud800"}')


def test_deeply_nested_batches_are_refused() -> None:
    wire = '{"type":"ok"}'
    for _ in range(400):
        wire = '{"type":"batch","frames":[' + wire + "]}"
    assert len(wire) < DEFAULT_MAX_FRAME_BYTES
    violation(JsonCodec().decode_server, wire)


# ---------------------------------------------------------------------------------------------
# Schema compilation guards: a frame with a field the codec cannot check fails at import.


@dataclasses.dataclass(frozen=True)
class _MapField:
    counts: dict[str, int]


@dataclasses.dataclass(frozen=True)
class _AmbiguousUnion:
    value: int | str | None


def test_unsupported_field_types_fail_schema_compilation() -> None:
    with pytest.raises(TypeError, match="unsupported field type dict"):
        _Schema(_MapField, {}, strict=True)
    with pytest.raises(TypeError, match="unsupported union"):
        _Schema(_AmbiguousUnion, {}, strict=True)


# ---------------------------------------------------------------------------------------------
# Property tests


def strategy_for(hint: Any, bounds: Any = None, depth: int = 0) -> st.SearchStrategy[Any]:
    """Valid values for a field, from its annotation and metadata (not from the codec)."""
    bounds = bounds or {}
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        args = typing.get_args(hint)
        if all(isinstance(a, type) and issubclass(a, Frame) for a in args):
            leaves = [a for a in args if a is not Batch]  # batches do not nest
            return st.one_of([frame_strategy(a, depth + 1) for a in leaves])
        (inner,) = [a for a in args if a is not type(None)]
        return st.none() | strategy_for(inner, bounds, depth)
    tp = unwrap(hint)
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        low, high = bounds.get("min_items", 0), min(bounds.get("max_items", 3), 3)
        return st.lists(strategy_for(item, bounds, depth), min_size=low, max_size=high)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return st.sampled_from(list(tp))
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.integers(bounds.get("ge", -(2**63)), bounds.get("le", 2**63 - 1))
    if tp is float:
        return st.floats(allow_nan=False, allow_infinity=False)
    if tp is str:
        high = min(bounds.get("max_chars", 40), 40)
        # Encodable text only (no lone surrogates), and no NUL: the wire refuses it.
        text = st.characters(codec="utf-8", exclude_characters="\x00")
        return st.text(text, min_size=bounds.get("min_chars", 0), max_size=high)
    assert dataclasses.is_dataclass(tp)
    return frame_strategy(tp, depth)  # type: ignore[arg-type]


def frame_strategy(cls: type, depth: int = 0) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls)
    return st.builds(
        cls,
        **{f.name: strategy_for(hints[f.name], f.metadata, depth) for f in dataclasses.fields(cls)},
    )


PROPERTY = settings(max_examples=150, deadline=None, database=None)


@PROPERTY
@given(st.sampled_from(sorted(CODECS)), st.one_of([frame_strategy(c) for c in CLIENT_FRAMES]))
def test_any_valid_client_frame_round_trips(subprotocol: str, frame: Frame) -> None:
    codec = codec_for(subprotocol, 1 << 20)
    assert codec.decode_client(codec.encode(frame)) == frame


@PROPERTY
@given(st.sampled_from(sorted(CODECS)), st.one_of([frame_strategy(c) for c in SERVER_FRAMES]))
def test_any_valid_server_frame_round_trips(subprotocol: str, frame: Frame) -> None:
    codec = codec_for(subprotocol, 1 << 20)
    assert codec.decode_server(codec.encode(frame)) == frame


_INT64 = st.integers(-(2**63), 2**64 - 1)
_SCALARS = (
    st.none()
    | st.booleans()
    | _INT64
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
_NAMES = sorted(
    {c.TYPE for c in CLIENT_FRAMES + SERVER_FRAMES}
    | {f.name for c in CLIENT_FRAMES + SERVER_FRAMES for f in dataclasses.fields(c)}  # type: ignore[arg-type]
    | {"offset", "epoch", "type", "frames"}
)
_KEYS = st.sampled_from(_NAMES) | st.text(max_size=8)
_MSGPACK_KEYS = _KEYS | st.binary(max_size=4)  # binary keys pass strict_map_key


def _values(
    scalars: st.SearchStrategy[Any], keys: st.SearchStrategy[Any]
) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars | st.sampled_from(_NAMES),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
        max_leaves=20,
    )


JSON_VALUES = _values(_SCALARS, _KEYS)
MSGPACK_VALUES = _values(
    _SCALARS
    | st.binary(max_size=8)
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=4))
    | st.builds(msgpack.Timestamp, st.integers(0, 2**34), st.integers(0, 999_999_999)),
    _MSGPACK_KEYS,
)


def frame_like(
    values: st.SearchStrategy[Any], keys: st.SearchStrategy[Any]
) -> st.SearchStrategy[Any]:
    """Maps that look like frames: a real (or any) type and real field names with any values."""
    kinds = st.sampled_from(sorted(c.TYPE for c in CLIENT_FRAMES + SERVER_FRAMES)) | values
    return st.builds(
        lambda kind, fields: {"type": kind, **fields},
        kinds,
        st.dictionaries(keys, values, max_size=6),
    )


def assert_decodes_or_refuses(codec: Codec, decode: Decode, wire: Wire) -> None:
    """Either a frame that re-encodes to itself, or a ProtocolViolation; nothing else."""
    try:
        frame = decode(wire)
    except ProtocolViolation as exc:
        assert isinstance(exc.message, str)
        assert exc.code in (ErrorCode.BAD_FRAME, ErrorCode.TOO_LARGE)
        return
    assert isinstance(frame, Frame)
    roomy = resized(codec, 1 << 24)
    again = roomy.decode_client if decode.__name__ == "decode_client" else roomy.decode_server
    assert again(roomy.encode(frame)) == frame


@PROPERTY
@given(data=st.binary(max_size=300))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    for codec in (JsonCodec(), MsgpackCodec(), JsonCodec(max_frame_bytes=100)):
        assert_decodes_or_refuses(codec, codec.decode_client, data)
        assert_decodes_or_refuses(codec, codec.decode_server, data)


@PROPERTY
@given(data=st.text(max_size=300))
def test_fuzz_arbitrary_text(data: str) -> None:
    for codec in (JsonCodec(), MsgpackCodec()):
        assert_decodes_or_refuses(codec, codec.decode_client, data)


@PROPERTY
@given(value=JSON_VALUES | frame_like(JSON_VALUES, _KEYS))
def test_fuzz_json_values(value: Any) -> None:
    codec = JsonCodec()
    wire = orjson.dumps(value).decode()
    assert_decodes_or_refuses(codec, codec.decode_client, wire)
    assert_decodes_or_refuses(codec, codec.decode_server, wire)


@PROPERTY
@given(value=MSGPACK_VALUES | frame_like(MSGPACK_VALUES, _MSGPACK_KEYS))
def test_fuzz_msgpack_values(value: Any) -> None:
    codec = MsgpackCodec()
    wire = msgpack.packb(value)
    assert_decodes_or_refuses(codec, codec.decode_client, wire)
    assert_decodes_or_refuses(codec, codec.decode_server, wire)


@PROPERTY
@given(
    frame=st.one_of([frame_strategy(c) for c in CLIENT_FRAMES]),
    key=_KEYS,
    value=JSON_VALUES,
)
def test_fuzz_one_field_of_a_valid_frame(frame: Frame, key: str, value: Any) -> None:
    """Mutating one field of a valid frame gives a valid frame or a violation naming a field."""
    codec = JsonCodec()
    wire_map = {**to_wire(frame), key: value}
    try:
        decoded = codec.decode_client(orjson.dumps(wire_map).decode())
    except ProtocolViolation as exc:
        if key != "type":
            assert exc.message.startswith((f"{key}: ", "frame: unexpected field ")), exc.message
            assert exc.ref == (None if key == "ref" else getattr(frame, "ref", None))
        return
    assert wire_map["type"] == decoded.TYPE
    if key != "type":
        assert decoded == dataclasses.replace(decoded, **{key: getattr(decoded, key)})  # type: ignore[type-var]
