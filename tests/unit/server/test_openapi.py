"""The OpenAPI document: valid OpenAPI 3.1, one operation per mounted route and no other, and
schemas that accept what the server really sends and receives.

The frames checked against the schemas are the protocol tests' samples (every frame, every
optional field set, and the smallest of each), so a schema that drifts from the codec fails.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from protocol import ErrorCode, Frame, Privacy, to_wire
from server.broker import MemoryBroker
from server.config import Config
from server.http_api import STATUS, HttpApi
from server.hub import Hub
from server.metrics import Metrics
from server.openapi import DOCUMENT_PATH, openapi_document
from server.operations import OPERATIONS, Operation, Operations
from server.presence import MemoryPresence
from server.privacy.account_deletion import AccountDeletion
from server.privacy.deletion_routes import DELETION_ROUTES
from server.privacy.export import Exports
from server.privacy.routes import HOLD_ROUTES
from server.sessions.accounts import Accounts
from server.sessions.routes import ACCOUNT_ROUTES
from server.signin.limits import SignInLimits
from server.signin.oidc import Oidc
from server.signin.passwords import Passwords
from server.signin.service import SignIn
from server.signin.sessions import Sessions
from server.tasks import TaskSupervisor
from storage import open_store
from tests.unit.protocol import CLIENT_MINIMAL, CLIENT_SAMPLES, SERVER_MINIMAL, SERVER_SAMPLES

DOCUMENT = openapi_document(STATUS, version="0.0.0")
_PARAM = re.compile(r"\{(\w+)\}")


def test_the_document_is_valid_openapi_3_1() -> None:
    validate(DOCUMENT)  # raises with the first violation
    assert DOCUMENT["openapi"].startswith("3.1.")


async def _mounted(data_dir: Path) -> set[tuple[str, str]]:
    config = Config(data_dir=data_dir)
    store = await open_store(f"sqlite:///{data_dir / 'openapi.sqlite3'}")
    tasks = TaskSupervisor()
    hub = Hub(store, MemoryBroker(), MemoryPresence(), tasks, Metrics(), node="openapi")
    try:
        ops = Operations(store, hub, {}, config)
        deletion = AccountDeletion(store, config)
        sessions = Sessions(store, config)
        oidc = Oidc(store, sessions, public_url="")
        api = HttpApi(
            config,
            store,
            ops,
            Accounts(store, config),
            deletion,
            Exports(store, member_exports=True),
            SignIn(store, sessions, Passwords(), SignInLimits.build(config, None)),
            oidc,
        )
        return {
            (method, route.path)
            for route in api.routes()
            for method in route.methods or ()
            if method != "HEAD"  # Starlette's own, beside every GET
        }
    finally:
        await oidc.aclose()
        await tasks.aclose()
        await store.aclose()


def test_every_mounted_route_is_in_the_document_and_nothing_else(tmp_path: Path) -> None:
    mounted = asyncio.run(_mounted(tmp_path))
    documented = {
        (method.upper(), path) for path, item in DOCUMENT["paths"].items() for method in item
    }
    assert sorted(mounted - documented) == [], "mounted but not documented"
    assert sorted(documented - mounted) == [], "documented but not mounted"


def http_rows() -> list[Any]:
    return [
        pytest.param(op, http, id=f"{op.frame.TYPE}:{http.method} {http.path}")
        for op in OPERATIONS
        for http in op.http
    ]


def operation_of(method: str, path: str) -> dict[str, Any]:
    return DOCUMENT["paths"][path][method.lower()]  # type: ignore[no-any-return]


@pytest.mark.parametrize(("op", "http"), http_rows())
def test_each_route_of_the_table_is_described(op: Operation, http: Any) -> None:
    described = operation_of(http.method, http.path)
    assert described["summary"] == op.summary
    assert f"`{op.frame.TYPE}`" in described["description"]
    params = {p["name"]: p for p in described.get("parameters", [])}
    assert [n for n, p in params.items() if p["in"] == "path"] == _PARAM.findall(http.path)
    assert {n for n, p in params.items() if p["in"] == "query"} == {
        *http.query,
        *http.text_query,
    }
    success = described["responses"][str(http.status)]
    if http.stream:  # the archive the reply describes
        assert success["content"]["application/zip"]["schema"]["format"] == "binary"
        assert {"X-Cloison-Export-Items", "X-Cloison-Export-Counts"} <= set(success["headers"])
    else:
        schema = success["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{op.reply.__name__}"}
    for status in set(STATUS.values()):
        assert str(status) in described["responses"], status
    if op.right is not None:
        assert f"`{op.right}`" in described["description"]


def test_security_is_bearer_except_for_the_document() -> None:
    assert DOCUMENT["security"] == [{"bearer": []}]
    assert DOCUMENT["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
    }
    assert operation_of("GET", DOCUMENT_PATH)["security"] == []


def test_error_body() -> None:
    error = DOCUMENT["components"]["schemas"]["Error"]
    assert error["required"] == ["code", "message", "retryable"]
    assert set(error["properties"]) == {"code", "message", "retryable", "retry_after_ms"}
    assert error["properties"]["code"]["enum"] == [code.value for code in ErrorCode]
    responses = DOCUMENT["components"]["responses"]
    assert {f"Error{status}" for status in STATUS.values()} == set(responses)
    assert "Retry-After" in responses[f"Error{STATUS[ErrorCode.RATE_LIMITED]}"]["headers"]


def component_validator(name: str) -> OAS31Validator:
    schema = {"$ref": f"#/components/schemas/{name}", "components": DOCUMENT["components"]}
    return OAS31Validator(schema)


def http_body(frame: Frame) -> dict[str, Any]:
    """A frame as the HTTP API answers it: its wire map without ``ref``."""
    body: dict[str, Any] = to_wire(frame)
    body.pop("ref", None)
    return body


REPLIES = {op.reply for op in OPERATIONS if op.http}


@pytest.mark.parametrize(
    "frame",
    [f for f in SERVER_SAMPLES + SERVER_MINIMAL if type(f) in REPLIES],
    ids=lambda f: f.TYPE,
)
def test_reply_schemas_accept_real_replies(frame: Frame) -> None:
    validator = component_validator(type(frame).__name__)
    errors = [e.message for e in validator.iter_errors(http_body(frame))]
    assert errors == []
    assert not validator.is_valid({**http_body(frame), "type": "not_" + frame.TYPE})


def request_cases() -> list[Any]:
    cases = []
    for frame in CLIENT_SAMPLES + CLIENT_MINIMAL:
        op = next(op for op in OPERATIONS if op.frame is type(frame))
        for http in op.http:
            if fits(frame, http):
                cases.append(
                    pytest.param(frame, http, id=f"{frame.TYPE}:{http.method} {http.path}")
                )
    return cases


def fits(frame: Frame, http: Any) -> bool:
    """Whether a client would send ``frame`` on this route (of several for one frame)."""
    fields = set(http_body(frame)) - {"type"}
    in_path = set(_PARAM.findall(http.path))
    if not in_path <= fields:
        return False
    return http.method != "GET" or fields <= in_path | {*http.query, *http.text_query}


@pytest.mark.parametrize(("frame", "http"), request_cases())
def test_request_schemas_accept_real_requests(frame: Frame, http: Any) -> None:
    """The frame split as a client sends it: path, query and body each validate."""
    described = operation_of(http.method, http.path)
    wire = http_body(frame)
    wire.pop("type")
    for param in described.get("parameters", []):
        value = wire.pop(param["name"], None)
        if value is None:
            assert not param["required"], param["name"]
            continue
        assert OAS31Validator(param["schema"]).is_valid(value), (param["name"], value)
    body = described.get("requestBody")
    if body is None:
        assert wire == {}, wire
        return
    schema = body["content"]["application/json"]["schema"]
    validator = OAS31Validator({**schema, "components": DOCUMENT["components"]})
    assert [e.message for e in validator.iter_errors(wire)] == []
    assert not validator.is_valid({**wire, "unknown_field": 1})


@pytest.mark.parametrize(
    "route",
    [*ACCOUNT_ROUTES, *DELETION_ROUTES, *HOLD_ROUTES],
    ids=lambda r: f"{r.method} {r.path}",
)
def test_account_routes_are_described(route: Any) -> None:
    described = operation_of(route.method, route.path)
    assert described["summary"] == route.summary
    assert str(route.status) in described["responses"]
    if route.admin:
        assert "administrators only" in described["description"]


def test_operation_ids_are_unique() -> None:
    ids = [op["operationId"] for item in DOCUMENT["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


def test_bounds_come_from_the_frames() -> None:
    publish = operation_of("POST", "/spheres/{sphere_id}/messages")
    body = publish["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["message_id", "body"]
    assert body["properties"]["message_id"] == {"type": "string", "minLength": 1, "maxLength": 64}
    assert body["properties"]["reply_to"]["minimum"] == 1
    create = operation_of("POST", "/spheres")
    privacy = create["requestBody"]["content"]["application/json"]["schema"]["properties"][
        "privacy"
    ]
    assert privacy == {
        "type": "string",
        "enum": [p.value for p in Privacy],
        "default": "private",
    }
    history = {
        p["name"]: p for p in operation_of("GET", "/spheres/{sphere_id}/messages")["parameters"]
    }
    assert history["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 200}
    assert history["limit"]["required"] is False
