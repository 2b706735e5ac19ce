"""The OpenAPI 3.1 document of the HTTP API, generated from the operation table.

Each HTTP entry of ``server.operations.table`` becomes one operation: its path and query
parameters, its JSON body (the frame's other fields) and its reply frame are described from the
frame dataclasses themselves — types from their annotations, bounds from their field metadata
(the codec's own limits), closed sets from their ``StrEnum``s — so the document says what the
server validates. The account and administration routes, which are not frames, bring their own
description (``server.sessions.routes.ACCOUNT_ROUTES``). Error answers share one body and the
statuses of ``server.http_api.STATUS``.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any

from protocol import ErrorCode, Frame, RateLimitedError
from server.operations.table import OPERATIONS, Http, Operation
from server.privacy.deletion_routes import DELETION_ROUTES, DELETION_SCHEMAS
from server.privacy.routes import HOLD_ROUTES, HOLD_SCHEMAS
from server.privacy.streaming import ARCHIVE_HEADERS, ARCHIVE_SCHEMA
from server.sessions.routes import ACCOUNT_ROUTES, ACCOUNT_SCHEMAS, AccountRoute
from server.signin.routes import SIGNIN_ROUTES, SIGNIN_SCHEMAS

Schema = dict[str, Any]

OPENAPI_VERSION = "3.1.0"
DOCUMENT_PATH = "/openapi.json"  # under /api/v1, like every route it describes
_PARAM = re.compile(r"\{(\w+)\}")
_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
# Why: these fields travel in the path, in the envelope, or not at all over HTTP.
_NOT_IN_BODY = frozenset({"type", "ref"})


def _ref(name: str, kind: str = "schemas") -> Schema:
    return {"$ref": f"#/components/{kind}/{name}"}


class Schemas:
    """JSON Schemas of frames and value objects, gathered as named components.

    A frame's schema is its wire map as the HTTP API answers it: with its ``type``, without
    ``ref``. Fields left out when ``None`` are not required.
    """

    def __init__(self) -> None:
        self.components: dict[str, Schema] = {}

    def ref(self, cls: type) -> Schema:
        name = cls.__name__
        if name not in self.components:
            self.components[name] = {}  # taken before descending: value objects may nest
            self.components[name] = self._object(cls)
        return _ref(name)

    def _object(self, cls: type) -> Schema:
        names = [f.name for f in dataclasses.fields(cls) if f.name != "ref"]
        schema = self.fields(cls, names)
        if issubclass(cls, Frame):
            schema["properties"] = {"type": {"const": cls.TYPE}, **schema["properties"]}
            schema["required"] = ["type", *schema["required"]]
        return schema

    def fields(self, cls: type, names: Sequence[str], *, closed: bool = False) -> Schema:
        """An object schema of ``names``, fields of the dataclass ``cls``."""
        hints = typing.get_type_hints(cls)
        by_name = {f.name: f for f in dataclasses.fields(cls)}
        properties: Schema = {}
        required: list[str] = []
        for name in names:
            spec = by_name[name]
            properties[name] = self.field(hints[name], spec)
            if _required(spec) and type(None) not in typing.get_args(hints[name]):
                required.append(name)  # a field that may be None is left out when it is
        schema: Schema = {"type": "object", "properties": properties, "required": required}
        if closed:  # what a client sends: an unknown key is 400 ``bad_frame``
            schema["additionalProperties"] = False
        return schema

    def field(self, hint: Any, spec: dataclasses.Field[Any]) -> Schema:
        schema = self.value(hint, spec.metadata)
        if spec.default is not dataclasses.MISSING and spec.default is not None:
            default = spec.default
            schema["default"] = default.value if isinstance(default, Enum) else default
        return schema

    def value(self, hint: Any, bounds: Mapping[str, Any]) -> Schema:
        """The schema of one annotation; ``bounds`` are the codec's field limits."""
        if typing.get_origin(hint) in (types.UnionType, typing.Union):
            inner = [a for a in typing.get_args(hint) if a is not type(None)]
            if len(inner) != 1:
                raise TypeError(f"no schema for the union {hint}")
            hint = inner[0]
        hint = getattr(hint, "__supertype__", hint)  # NewType
        if typing.get_origin(hint) is list:
            (item,) = typing.get_args(hint)
            # A list's bounds: its length (min_items, max_items), and each item's own.
            return _bounded(
                {"type": "array", "items": self.value(item, bounds)},
                bounds,
                minItems="min_items",
                maxItems="max_items",
            )
        if isinstance(hint, type) and issubclass(hint, Enum):
            return {"type": "string", "enum": [member.value for member in hint]}
        if hint is bool:
            return {"type": "boolean"}
        if hint is int:
            return _bounded({"type": "integer"}, bounds, minimum="ge", maximum="le")
        if hint is float:
            return {"type": "number"}
        if hint is str:
            return _bounded(
                {"type": "string"}, bounds, minLength="min_chars", maxLength="max_chars"
            )
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            return self.ref(hint)
        raise TypeError(f"no schema for {hint!r}")


def _required(spec: dataclasses.Field[Any]) -> bool:
    return spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING


def _bounded(schema: Schema, bounds: Mapping[str, Any], **keys: str) -> Schema:
    for keyword, bound in keys.items():
        if bound in bounds:
            schema[keyword] = bounds[bound]
    return schema


# ---------------------------------------------------------------------------------------------
# Operations of the table


def _operation_id(op: Operation, http: Http) -> str:
    """The frame's name; a second route of the same frame adds its path parameters."""
    if http is op.http[0]:
        return op.frame.TYPE
    return "_".join([op.frame.TYPE, "by", *_PARAM.findall(http.path)])


# A streamed archive (``Http.stream``): what the row's reply describes, as a zip.
_ARCHIVE_RESPONSE: Schema = {
    "description": "the archive, streamed",
    "content": {"application/zip": {"schema": ARCHIVE_SCHEMA}},
    "headers": {
        name: {"description": what, "schema": {"type": "string"}} for name, what in ARCHIVE_HEADERS
    },
}


def _description(op: Operation) -> str:
    lines = [f"The `{op.frame.TYPE}` request, answered with `{op.reply.TYPE}`."]
    if op.right is not None:
        lines.append(f"Needs the `{op.right}` right in the sphere.")
    for name, right in op.when:
        lines.append(f"With `{name}`: needs the `{right}` right.")
    if any(http.stream for http in op.http):
        lines.append(
            f"Over HTTP, the answer is the archive that `{op.reply.TYPE}` describes, streamed."
        )
    if op.writes:
        lines.append(
            "Appends to the sphere's stream; idempotent on `message_id` (a retry is answered "
            "200 with `duplicate`)."
        )
    return " ".join(lines)


def _frame_operation(schemas: Schemas, op: Operation, http: Http, errors: Schema) -> Schema:
    frame = op.frame
    hints = typing.get_type_hints(frame)
    specs = {f.name: f for f in dataclasses.fields(frame)}  # type: ignore[arg-type]
    in_path = _PARAM.findall(http.path)
    parameters: list[Schema] = [
        {"name": name, "in": "path", "required": True, "schema": schemas.field(hints[name], spec)}
        for name, spec in ((name, specs[name]) for name in in_path)
    ]
    for name in (*http.query, *http.text_query):
        parameters.append(
            {
                "name": name,
                "in": "query",
                "required": _required(specs[name]),
                "schema": schemas.field(hints[name], specs[name]),
            }
        )
    taken = {*in_path, *http.query, *http.text_query, *_NOT_IN_BODY}
    body = [name for name in specs if name not in taken]
    operation: Schema = {
        "operationId": _operation_id(op, http),
        "summary": op.summary,
        "description": _description(op),
        "tags": [http.path.strip("/").split("/")[0]],
    }
    if parameters:
        operation["parameters"] = parameters
    if body and http.method != "GET":
        body_schema = schemas.fields(frame, body, closed=True)
        operation["requestBody"] = {
            "required": bool(body_schema["required"]),
            "content": {"application/json": {"schema": body_schema}},
        }
    reply = {"content": {"application/json": {"schema": schemas.ref(op.reply)}}}
    responses: Schema = {str(http.status): {"description": f"`{op.reply.TYPE}`", **reply}}
    if http.stream:
        responses = {str(http.status): _ARCHIVE_RESPONSE}
    if op.writes and http.status == 201:
        responses["200"] = {"description": f"`{op.reply.TYPE}` of a retried write", **reply}
    operation["responses"] = {**responses, **errors}
    return operation


# ---------------------------------------------------------------------------------------------
# Routes described by hand


def _account_operation(route: AccountRoute, errors: Schema) -> Schema:
    parameters: list[Schema] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PARAM.findall(route.path)
    ]
    parameters += [
        {"name": name, "in": "query", "required": False, "schema": schema}
        for name, schema in route.query
    ]
    operation: Schema = {
        "operationId": _account_operation_id(route),
        "summary": route.summary,
        "tags": [route.path.strip("/").split("/")[0]],
    }
    if route.admin:
        operation["description"] = "Server administrators only (403 `forbidden` otherwise)."
    if route.public:
        operation["security"] = []  # no bearer token: this is how one gets one
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        operation["requestBody"] = {
            "required": bool(route.body.get("required")),
            "content": {"application/json": {"schema": route.body}},
        }
    success: Schema = {
        "description": "success",
        "content": {route.media_type: {"schema": route.reply}},
    }
    if route.headers:
        success["headers"] = {
            name: {"description": what, "schema": {"type": "string"}}
            for name, what in route.headers
        }
    operation["responses"] = {str(route.status): success, **errors}
    return operation


def _account_operation_id(route: AccountRoute) -> str:
    words = re.sub(r"[{}]", "", route.path).strip("/").replace("/", "_")
    return f"{route.method.lower()}_{words}"


# ---------------------------------------------------------------------------------------------
# Errors


def _error_responses(statuses: Mapping[ErrorCode, int]) -> tuple[Schema, Schema]:
    """The shared error answers (one per status) and the references every operation makes."""
    codes_by_status: dict[int, list[ErrorCode]] = {}
    for code, status in statuses.items():
        codes_by_status.setdefault(status, []).append(code)
    responses: Schema = {}
    for status, codes in sorted(codes_by_status.items()):
        answer: Schema = {
            "description": ", ".join(f"`{code.value}`" for code in codes),
            "content": {"application/json": {"schema": _ref("Error")}},
        }
        if ErrorCode.RATE_LIMITED in codes:
            answer["headers"] = {
                "Retry-After": {
                    "description": "whole seconds to wait (at least 1)",
                    "schema": {"type": "integer", "minimum": 1},
                }
            }
        responses[f"Error{status}"] = answer
    refs = {name.removeprefix("Error"): _ref(name, "responses") for name in responses}
    return responses, refs


def _error_schema(statuses: Mapping[ErrorCode, int]) -> Schema:
    return {
        "type": "object",
        "required": ["code", "message", "retryable"],
        "properties": {
            "code": {"type": "string", "enum": [code.value for code in ErrorCode]},
            "message": {"type": "string", "description": "for people; match on code"},
            "retryable": {"type": "boolean"},
            "retry_after_ms": {
                "type": "integer",
                "minimum": 1,
                "description": f"with `{RateLimitedError.code.value}` only",
            },
        },
    }


# ---------------------------------------------------------------------------------------------
# The document


def openapi_document(statuses: Mapping[ErrorCode, int], *, version: str) -> Schema:
    """The OpenAPI 3.1 document of every route under ``/api/v1``.

    Args:
        statuses: the HTTP status of each error code (``server.http_api.STATUS``).
        version: the server's version, for ``info.version``.
    """
    schemas = Schemas()
    error_responses, errors = _error_responses(statuses)
    paths: dict[str, Schema] = {}
    for op in OPERATIONS:
        for http in op.http:
            item = paths.setdefault(http.path, {})
            item[http.method.lower()] = _frame_operation(schemas, op, http, errors)
    for route in (*ACCOUNT_ROUTES, *DELETION_ROUTES, *HOLD_ROUTES, *SIGNIN_ROUTES):
        item = paths.setdefault(route.path, {})
        item[route.method.lower()] = _account_operation(route, errors)
    paths[DOCUMENT_PATH] = {
        "get": {
            "operationId": "openapi",
            "summary": "This document.",
            "tags": ["openapi"],
            "security": [],
            "responses": {"200": {"description": "the OpenAPI document"}},
        }
    }
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Cloison HTTP API",
            "version": version,
            "description": (
                "Every sphere route builds the client frame a WebSocket client would send and "
                "validates it with the same rules (docs/protocol.md, section 19)."
            ),
        },
        "servers": [{"url": "/api/v1"}],
        "security": _BEARER,
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": _error_schema(statuses),
                **dict(sorted(schemas.components.items())),
                **ACCOUNT_SCHEMAS,
                **DELETION_SCHEMAS,
                **HOLD_SCHEMAS,
                **SIGNIN_SCHEMAS,
            },
            "responses": error_responses,
        },
    }
