"""The operation table is complete and consistent with the frames it names.

Each check is per row, so a failure names the operation at fault. The table must hold every
client frame once; its HTTP routes must be unique and build valid frames; the rights it names
must be checkable on the frame; every row must have a handler (``Operations.missing``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import types
import typing
from collections import Counter
from enum import Enum
from pathlib import Path
from typing import Any

import pytest

from protocol import CLIENT_FRAMES, SERVER_FRAMES, Ack, Batch, Frame
from server.broker import MemoryBroker
from server.config import Config
from server.hub import Hub
from server.metrics import Metrics
from server.operations import OPERATIONS, RATE_CLASSES, Operation, Operations
from server.operations.table import BY_FRAME, INTEGER_PATH_PARAMS
from server.presence import MemoryPresence
from server.ratelimit import RateClass
from server.tasks import TaskSupervisor
from storage import open_store

_PARAM = re.compile(r"\{(\w+)\}")


def row_id(op: Operation) -> str:
    return op.frame.TYPE


ROWS = [pytest.param(op, id=row_id(op)) for op in OPERATIONS]


def field_types(frame: type[Frame]) -> dict[str, Any]:
    """Each field's type, without ``| None`` and ``NewType``."""
    out: dict[str, Any] = {}
    for name, hint in typing.get_type_hints(frame).items():
        if name == "TYPE":
            continue
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if typing.get_origin(hint) in (types.UnionType, typing.Union) and len(args) == 1:
            hint = args[0]
        out[name] = getattr(hint, "__supertype__", hint)
    return out


def test_every_client_frame_has_exactly_one_row() -> None:
    counts = Counter(op.frame for op in OPERATIONS)
    assert [f.TYPE for f, n in counts.items() if n > 1] == []
    assert [f.TYPE for f in CLIENT_FRAMES if f not in counts] == []
    assert [f.TYPE for f in counts if f not in CLIENT_FRAMES] == []
    assert set(BY_FRAME) == set(CLIENT_FRAMES)


def test_http_routes_are_unique() -> None:
    routes = Counter((http.method, http.path) for op in OPERATIONS for http in op.http)
    assert [route for route, n in routes.items() if n > 1] == []


@pytest.mark.parametrize("op", ROWS)
def test_http_routes_build_the_frame(op: Operation) -> None:
    """Path parameters and query parameters are fields of the frame, of the right type."""
    fields = field_types(op.frame)
    frame_fields = dataclasses.fields(op.frame)  # type: ignore[arg-type]
    required = {f.name for f in frame_fields if f.default is dataclasses.MISSING}
    settable = {f.name for f in frame_fields} - {"ref"}
    got: set[str] = set()
    for http in op.http:
        assert http.method in ("GET", "POST", "PUT", "PATCH", "DELETE"), http
        assert http.path.startswith("/") and not http.path.endswith("/"), http
        params = _PARAM.findall(http.path)
        assert len(params) == len(set(params)), http
        for name in params:
            assert name in fields, f"{http.path}: {name} is not a field of {op.frame.TYPE}"
            expected = int if name in INTEGER_PATH_PARAMS else str
            assert fields[name] is expected, f"{http.path}: {name} should be {expected}"
        for name in http.query:
            assert fields.get(name) in (int, bool), f"query {name} of {op.frame.TYPE}"
        for name in http.text_query:
            assert fields.get(name) is str, f"text query {name} of {op.frame.TYPE}"
        taken = [*params, *http.query, *http.text_query]
        assert len(taken) == len(set(taken)), http
        assert "ref" not in taken and "type" not in taken
        if http.method == "GET":
            # A GET carries no body: its required fields are in the path or the query, and
            # the row's GET routes together can set every field.
            assert required <= set(taken), f"GET {http.path} cannot set {required - set(taken)}"
            got.update(taken)
        assert http.status in (200, 201), http
    if got:
        assert settable <= got, f"the GET routes of {op.frame.TYPE} cannot set {settable - got}"


@pytest.mark.parametrize("op", ROWS)
def test_rights_are_checkable_on_the_frame(op: Operation) -> None:
    """A right is checked in the sphere the frame names; ``when`` names fields of the frame."""
    fields = field_types(op.frame)
    if op.right is not None or op.when:
        assert "sphere_id" in fields, f"{op.frame.TYPE} names a right but no sphere"
    for name, _right in op.when:
        assert name in fields, f"when: {name} is not a field of {op.frame.TYPE}"


@pytest.mark.parametrize("op", ROWS)
def test_every_row_has_a_reply_frame(op: Operation) -> None:
    assert op.reply in SERVER_FRAMES and op.reply is not Batch
    if op.writes:
        assert op.reply is Ack, f"{op.frame.TYPE} appends to the stream: answered with ack"
    assert op.summary.endswith(".") and "\n" not in op.summary


@pytest.mark.parametrize("op", ROWS)
def test_writes_are_idempotent_sphere_events(op: Operation) -> None:
    if op.writes:
        fields = field_types(op.frame)
        assert {"sphere_id", "message_id"} <= set(fields), op.frame.TYPE
        assert op.right is not None


def test_rate_classes_cover_every_client_frame() -> None:
    assert set(RATE_CLASSES) == set(CLIENT_FRAMES)
    assert all(isinstance(cls, RateClass) for cls in RATE_CLASSES.values())
    # The handshake and the keepalive cost nothing: a client must always be able to send them.
    for op in OPERATIONS:
        if op.rate is RateClass.FREE:
            assert op.right is None and not op.http and not op.writes, op.frame.TYPE


def test_enum_fields_are_string_enums() -> None:
    """The OpenAPI document lists their values; nothing else has a closed set of values."""
    for op in OPERATIONS:
        for name, tp in field_types(op.frame).items():
            if isinstance(tp, type) and issubclass(tp, Enum):
                assert all(isinstance(m.value, str) for m in tp), f"{op.frame.TYPE}.{name}"


async def _missing(data_dir: Path) -> frozenset[type[Frame]]:
    store = await open_store(f"sqlite:///{data_dir / 'table.sqlite3'}")
    tasks = TaskSupervisor()
    hub = Hub(store, MemoryBroker(), MemoryPresence(), tasks, Metrics(), node="table")
    try:
        operations = Operations(store, hub, {}, Config(data_dir=data_dir))
        return frozenset(op.frame for op in operations.missing())
    finally:
        await tasks.aclose()
        await store.aclose()


@pytest.fixture(scope="module")
def unhandled(tmp_path_factory: pytest.TempPathFactory) -> frozenset[type[Frame]]:
    """The rows no capability module handles, from the dispatcher the server builds."""
    return asyncio.run(_missing(tmp_path_factory.mktemp("table")))


@pytest.mark.parametrize("op", ROWS)
def test_row_has_a_handler(op: Operation, unhandled: frozenset[type[Frame]]) -> None:
    """``Operations.missing()`` is empty: fails for each row whose capability is not merged."""
    assert op.frame not in unhandled, f"no capability module handles {op.frame.TYPE}"
