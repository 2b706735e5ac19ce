"""Encode frames to bytes and decode (parse, then validate) bytes to frames.

Two encodings carry the same frames, chosen by the WebSocket subprotocol:
``cloison.v1.json`` (UTF-8 JSON in text messages) and ``cloison.v1.msgpack`` (MessagePack in
binary messages). Decoding checks the size, the ``type``, every field's presence and type, and
each field's bounds; anything else raises ``ProtocolViolation`` with a message that names the
offending field. Nothing here does I/O.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any, Protocol

import msgpack
import orjson

from protocol.catalog import CLIENT_FRAMES, SERVER_FRAMES
from protocol.errors import FrameTooLarge, ProtocolViolation
from protocol.fields import MAX_REF_CHARS, PROTOCOL_VERSION, Frame

# What one encoded frame is: text for JSON (sent as a text message), bytes for MessagePack.
Wire = str | bytes

# Why: the default guards every frame against a client that sends megabytes; servers override it.
DEFAULT_MAX_FRAME_BYTES = 64 * 1024
# Why: the server keeps every frame it sends below this (a history page is trimmed to fit), and
# 1 MiB is what browsers and common WebSocket libraries accept by default.
MAX_SERVER_FRAME_BYTES = 1024 * 1024

_Check = Callable[[Any, str], Any]


class Codec(Protocol):
    """One encoding of the protocol."""

    subprotocol: str
    binary: bool  # True: frames travel as binary WebSocket messages, else as text

    def encode(self, frame: Frame) -> Wire: ...

    def batch(self, parts: Sequence[Wire]) -> Wire:
        """Wrap already-encoded server frames in one ``batch`` frame without re-encoding them."""
        ...

    def decode_client(self, data: Wire) -> Frame: ...

    def decode_server(self, data: Wire) -> Frame: ...


# ---------------------------------------------------------------------------------------------
# Schema: compiled once from the dataclass annotations.


def _describe(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _compile(tp: Any, frames_by_type: dict[str, type[Frame]], strict: bool) -> _Check:
    supertype = getattr(tp, "__supertype__", None)
    if supertype is not None:  # NewType
        return _compile(supertype, frames_by_type, strict)
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(tp)
        if all(isinstance(a, type) and issubclass(a, Frame) for a in args):
            return lambda value, path: _decode_inner_frame(value, frames_by_type, path)
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"unsupported union {tp}")
        check = _compile(inner[0], frames_by_type, strict)
        return lambda value, path: None if value is None else check(value, path)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        item = _compile(item_tp, frames_by_type, strict)

        def check_list(value: Any, path: str) -> list[Any]:
            if not isinstance(value, list):
                raise ProtocolViolation(f"{path}: expected an array")
            return [item(v, f"{path}[{i}]") for i, v in enumerate(value)]

        return check_list
    if isinstance(tp, type) and issubclass(tp, Enum):
        allowed = {m.value: m for m in tp}

        def check_enum(value: Any, path: str) -> Any:
            if not isinstance(value, str) or value not in allowed:
                raise ProtocolViolation(f"{path}: expected one of {', '.join(allowed)}")
            return allowed[value]

        return check_enum
    if tp is bool:
        return _check_bool
    if tp is int:
        return _check_int
    if tp is float:
        return _check_float
    if tp is str:
        return _check_str
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        schema = _Schema(tp, frames_by_type, strict)
        return schema.check
    raise TypeError(f"unsupported field type {_describe(tp)}")


def _check_bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise ProtocolViolation(f"{path}: expected a boolean")
    return value


def _check_int(value: Any, path: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProtocolViolation(f"{path}: expected an integer")
    return value


def _check_float(value: Any, path: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ProtocolViolation(f"{path}: expected a number")
    return float(value)


def _check_str(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise ProtocolViolation(f"{path}: expected a string")
    if "\x00" in value:  # no store keeps NUL in text (PostgreSQL refuses it)
        raise ProtocolViolation(f"{path}: must not contain NUL characters")
    return value


class _Schema:
    """Field checks of one dataclass, plus how to turn an instance back into a wire map."""

    def __init__(self, cls: type, frames_by_type: dict[str, type[Frame]], strict: bool) -> None:
        # Strict for what clients send; lenient for what servers send, so a client keeps
        # working when a newer server adds fields (the protocol tells clients to ignore them).
        self.strict = strict
        self.cls = cls
        hints = typing.get_type_hints(cls)
        self.fields: list[tuple[str, _Check, bool, dict[str, int]]] = []
        # Fields without a default that may be None (absent on the wire means None).
        self.nullable: list[str] = []
        for f in dataclasses.fields(cls):
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if required and type(None) in typing.get_args(hints[f.name]):
                required = False
                self.nullable.append(f.name)
            check = _compile(hints[f.name], frames_by_type, strict)
            self.fields.append((f.name, check, required, dict(f.metadata)))
        self.names = frozenset(name for name, *_ in self.fields)

    def check(self, value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            raise ProtocolViolation(f"{path}: expected a map")
        return self.build(value, path)

    def build(self, data: dict[Any, Any], path: str) -> Any:
        kwargs: dict[str, Any] = dict.fromkeys(self.nullable)
        for name, check, required, bounds in self.fields:
            where = f"{path}.{name}" if path else name
            if name not in data or (data[name] is None and not required):
                if required:
                    raise ProtocolViolation(f"{where}: missing")
                continue
            value = check(data[name], where)
            if bounds:
                _check_bounds(value, bounds, where)
            kwargs[name] = value
        extra = [k for k in data if k not in self.names and k != "type"] if self.strict else []
        if extra:
            raise ProtocolViolation(f"{path or 'frame'}: unexpected field {str(extra[0])[:40]!r}")
        return self.cls(**kwargs)


def _check_bounds(value: Any, bounds: dict[str, int], where: str) -> None:
    if isinstance(value, list):  # its length, then each item's own bounds
        if len(value) < bounds.get("min_items", 0):
            raise ProtocolViolation(f"{where}: at least {bounds['min_items']} items")
        if len(value) > bounds.get("max_items", len(value)):
            raise ProtocolViolation(f"{where}: at most {bounds['max_items']} items")
        for index, item in enumerate(value):
            _check_bounds(item, bounds, f"{where}[{index}]")
    elif isinstance(value, str):
        if len(value) < bounds["min_chars"]:
            raise ProtocolViolation(f"{where}: must not be empty")
        if len(value) > bounds["max_chars"]:
            raise ProtocolViolation(f"{where}: longer than {bounds['max_chars']} characters")
    elif isinstance(value, int) and not bounds["ge"] <= value <= bounds["le"]:
        raise ProtocolViolation(f"{where}: must be between {bounds['ge']} and {bounds['le']}")


_SCHEMAS: dict[type, _Schema] = {}


def decode_client_map(data: Any) -> Frame:
    """Validate an already-parsed map as a client frame (the HTTP API reuses the frame rules)."""
    return _decode_frame(data, _CLIENT_TYPES)


def _decode_frame(data: Any, frames_by_type: dict[str, type[Frame]], path: str = "") -> Frame:
    if not isinstance(data, dict):
        raise ProtocolViolation(f"{path or 'frame'}: expected a map")
    try:
        kind = data.get("type")
        if not isinstance(kind, str):
            raise ProtocolViolation(f"{path + '.' if path else ''}type: missing or not a string")
        cls = frames_by_type.get(kind)
        if cls is None:
            raise ProtocolViolation(
                f"{path + ': ' if path else ''}unknown frame type {kind[:40]!r}"
            )
        frame: Frame = _SCHEMAS[cls].build(data, path)
    except ProtocolViolation as exc:
        # Echo the request's ref, when it is one the frame itself would accept.
        ref = data.get("ref")
        if isinstance(ref, str) and 0 < len(ref) <= MAX_REF_CHARS:
            exc.ref = ref
        raise
    return frame


def _decode_inner_frame(value: Any, frames_by_type: dict[str, type[Frame]], path: str) -> Frame:
    """A frame inside a batch; batches do not nest, which bounds decoding depth."""
    if isinstance(value, dict) and value.get("type") == "batch":
        raise ProtocolViolation(f"{path}: a batch cannot contain a batch")
    return _decode_frame(value, frames_by_type, path)


_CLIENT_TYPES = {cls.TYPE: cls for cls in CLIENT_FRAMES}
_SERVER_TYPES = {cls.TYPE: cls for cls in SERVER_FRAMES}
for _types in (_CLIENT_TYPES, _SERVER_TYPES):
    for _cls in _types.values():
        _SCHEMAS[_cls] = _Schema(_cls, _types, strict=_types is _CLIENT_TYPES)


# ---------------------------------------------------------------------------------------------
# Frame -> plain map


def _wire_fields(cls: type) -> tuple[tuple[str, bool], ...]:
    """(name, needs conversion) for each field; plain scalars are copied as they are."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        text = str(hints[f.name])
        nested = (
            "list" in text
            or not isinstance(hints[f.name], type)
            or (dataclasses.is_dataclass(hints[f.name]))
        )
        out.append((f.name, nested))
    return tuple(out)


_FIELDS_CACHE: dict[type, tuple[tuple[str, bool], ...]] = {}


def to_wire(obj: Any) -> Any:
    """Turn a frame (or a nested value object) into maps, lists and scalars."""
    cls = type(obj)
    fields = _FIELDS_CACHE.get(cls)
    if fields is None:
        fields = _FIELDS_CACHE[cls] = _wire_fields(cls)
    out: dict[str, Any] = {"type": cls.TYPE} if isinstance(obj, Frame) else {}
    for name, nested in fields:
        value = getattr(obj, name)
        if value is None:
            continue
        if nested:
            value = _nested(value)
        out[name] = value
    return out


def _nested(value: Any) -> Any:
    if isinstance(value, list):
        return [_nested(v) for v in value]
    if dataclasses.is_dataclass(value):
        return to_wire(value)
    return value


# ---------------------------------------------------------------------------------------------
# Encodings


class JsonCodec:
    subprotocol = f"cloison.v{PROTOCOL_VERSION}.json"
    binary = False

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes

    def encode(self, frame: Frame) -> Wire:
        return orjson.dumps(to_wire(frame)).decode()

    def batch(self, parts: Sequence[Wire]) -> Wire:
        return '{"type":"batch","frames":[' + ",".join(_as_text(p) for p in parts) + "]}"

    def decode_client(self, data: Wire) -> Frame:
        return _decode_frame(self._parse(data, self.max_frame_bytes), _CLIENT_TYPES)

    def decode_server(self, data: Wire) -> Frame:
        return _decode_frame(self._parse(data, MAX_SERVER_FRAME_BYTES), _SERVER_TYPES)

    def _parse(self, data: Wire, limit: int) -> Any:
        # surrogatepass: a lone surrogate must reach orjson, which refuses it, not crash here.
        size = len(data) if isinstance(data, bytes) else len(data.encode(errors="surrogatepass"))
        if size > limit:
            raise FrameTooLarge(f"frame of {size} bytes exceeds {limit}")
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            raise ProtocolViolation("frame is not valid JSON") from None


def _as_text(part: Wire) -> str:
    return part if isinstance(part, str) else part.decode()


# A batch map is {"type": "batch", "frames": [...]}: its header never changes, only the count.
_MSGPACK_BATCH_HEAD = msgpack.packb({"type": "batch", "frames": []})[:-1]


def _msgpack_array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def _reject_ext(code: int, data: bytes) -> Any:
    raise ProtocolViolation("MessagePack extension types are not allowed")


class MsgpackCodec:
    subprotocol = f"cloison.v{PROTOCOL_VERSION}.msgpack"
    binary = True

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes

    def encode(self, frame: Frame) -> Wire:
        packed: bytes = msgpack.packb(to_wire(frame))
        return packed

    def batch(self, parts: Sequence[Wire]) -> Wire:
        raw = [p if isinstance(p, bytes) else p.encode() for p in parts]
        return _MSGPACK_BATCH_HEAD + _msgpack_array_header(len(raw)) + b"".join(raw)

    def decode_client(self, data: Wire) -> Frame:
        return _decode_frame(self._parse(data, self.max_frame_bytes), _CLIENT_TYPES)

    def decode_server(self, data: Wire) -> Frame:
        return _decode_frame(self._parse(data, MAX_SERVER_FRAME_BYTES), _SERVER_TYPES)

    def _parse(self, data: Wire, limit: int) -> Any:
        if not isinstance(data, bytes):
            raise ProtocolViolation("MessagePack frames must be binary messages")
        if len(data) > limit:
            raise FrameTooLarge(f"frame of {len(data)} bytes exceeds {limit}")
        try:
            return msgpack.unpackb(
                data,
                raw=False,
                strict_map_key=True,
                use_list=True,
                ext_hook=_reject_ext,
            )
        except ProtocolViolation:
            raise
        except (ValueError, TypeError, msgpack.UnpackException, RecursionError):
            # ValueError covers ExtraData, FormatError, StackError and bad UTF-8.
            raise ProtocolViolation("frame is not valid MessagePack") from None


CODECS: dict[str, type[JsonCodec] | type[MsgpackCodec]] = {
    JsonCodec.subprotocol: JsonCodec,
    MsgpackCodec.subprotocol: MsgpackCodec,
}


def codec_for(subprotocol: str, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> Codec:
    """The codec a WebSocket subprotocol names; raises KeyError for an unknown one."""
    return CODECS[subprotocol](max_frame_bytes)
