"""The server serves its OpenAPI document, without a token, and it describes this server."""

from __future__ import annotations

import importlib.metadata

import orjson
from openapi_spec_validator import validate

from server.http_api import STATUS
from server.openapi import openapi_document
from tests.support import ServerProcess


async def test_openapi_document_is_served_without_a_token(server: ServerProcess) -> None:
    async with server.http() as http:
        reply = await http.get("/api/v1/openapi.json")
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["cache-control"] == "no-store"
    document = orjson.loads(reply.content)
    validate(document)
    expected = openapi_document(STATUS, version=importlib.metadata.version("cloison"))
    assert document == orjson.loads(orjson.dumps(expected))


async def test_documented_routes_answer_on_this_server(server: ServerProcess) -> None:
    """Every documented GET route without path parameters is routed (neither 404 nor 405)."""
    async with server.http() as http:
        document = (await http.get("/api/v1/openapi.json")).json()
    paths = [p for p, item in document["paths"].items() if "get" in item and "{" not in p]
    assert "/spheres" in paths and "/me" in paths
    async with server.http(server.admin_token) as http:
        for path in paths:
            reply = await http.get("/api/v1" + path)
            assert reply.status_code not in (404, 405), (path, reply.status_code, reply.text)
