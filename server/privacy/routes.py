"""The retention and legal hold routes of the admin HTTP API (server administrators only).

``HOLD_ROUTES`` lists them in the shape of ``server.sessions.routes.ACCOUNT_ROUTES``, so the
OpenAPI document describes them alike. Setting or lifting a hold writes the sphere's ``sphere``
event, which is published at once, so the members see ``legal_hold`` change live.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from protocol import CloisonError, ErrorCode, Message, ProtocolViolation, SphereId
from server.auth import Principal
from server.hub import Hub
from server.operations import now_ms
from server.privacy.retention import MAX_HOLD_REASON_CHARS, effective_days, set_hold
from server.sessions.route_table import RouteShell
from server.sessions.routes import AccountRoute, Endpoint, Handler, Respond, Schema
from storage import LegalHoldRecord, RetentionStatus, SphereRecord, Store

_MS = {"type": "integer", "minimum": 0}
_NULL_MS = {"type": ["integer", "null"], "minimum": 0}


class HoldRoutes(RouteShell):
    def __init__(
        self,
        store: Store,
        hub: Hub,
        *,
        server_days: int,
        guard: Callable[[Handler], Endpoint],
        read_body: Callable[[Request], Awaitable[dict[str, Any]]],
        respond: Respond,
    ) -> None:
        super().__init__(HOLD_ROUTES, guard=guard, read_body=read_body, respond=respond)
        self._store = store
        self._hub = hub
        self._server_days = server_days

    async def _status(self, request: Request, principal: Principal) -> Response:
        sphere_id = SphereId(request.path_params["sphere_id"])
        found = await self._store.retention_status(sphere_id=sphere_id, limit=1)
        if not found:
            raise CloisonError("no such sphere", code=ErrorCode.NOT_FOUND)
        return self._respond(status_json(found[0], self._server_days), 200)

    async def _hold(self, request: Request, principal: Principal) -> Response:
        data = await self._body(request)
        extra = set(data) - {"reason", "until_ms"}
        if extra:
            raise ProtocolViolation(f"unexpected field {sorted(extra)[0]!r}")
        reason, until_ms = data.get("reason"), data.get("until_ms")
        if not isinstance(reason, str):
            raise ProtocolViolation("reason: required, a string")
        if until_ms is not None and (not isinstance(until_ms, int) or isinstance(until_ms, bool)):
            raise ProtocolViolation("until_ms: expected an integer")
        sphere, event = await set_hold(
            self._store,
            SphereId(request.path_params["sphere_id"]),
            principal.user.user_id,
            until_ms=until_ms,
            reason=reason,
            now_ms=now_ms(),
        )
        await self._publish(event)
        return self._respond(hold_view(sphere), 200)

    async def _release(self, request: Request, principal: Principal) -> Response:
        sphere, event = await self._store.release_legal_hold(
            SphereId(request.path_params["sphere_id"]), principal.user.user_id, now_ms=now_ms()
        )
        await self._publish(event)
        return self._respond(hold_view(sphere), 200)

    async def _publish(self, event: Message | None) -> None:
        if event is not None:
            await self._hub.publish(event)


def status_json(status: RetentionStatus, server_days: int) -> dict[str, Any]:
    return {
        "sphere_id": status.sphere_id,
        "retention_days": status.retention_days,
        "effective_days": effective_days(status.retention_days, server_days),
        "retained_from": status.retained_from,
        "offset": status.offset,
        "oldest_ms": status.oldest_ms,
        "run_ms": status.run_ms,
        "legal_hold": hold_json(status.hold),
    }


def hold_view(sphere: SphereRecord) -> dict[str, Any]:
    return {"sphere_id": sphere.sphere_id, "legal_hold": hold_json(sphere.hold)}


def hold_json(hold: LegalHoldRecord | None) -> dict[str, Any] | None:
    """A hold as administrators see it: with its reason and who set it."""
    if hold is None:
        return None
    return {
        "since_ms": hold.since_ms,
        "until_ms": hold.until_ms,
        "reason": hold.reason,
        "set_by": hold.set_by,
    }


def _object(required: tuple[str, ...], properties: Schema, *, closed: bool = False) -> Schema:
    schema: Schema = {"type": "object", "required": list(required), "properties": properties}
    if closed:
        schema["additionalProperties"] = False
    return schema


_HOLD = {
    "oneOf": [
        {"type": "null"},
        _object(
            ("since_ms", "until_ms", "reason", "set_by"),
            {
                "since_ms": _MS,
                "until_ms": _NULL_MS,
                "reason": {"type": "string"},
                "set_by": {"type": "string"},
            },
        ),
    ]
}
HOLD_SCHEMAS: dict[str, Schema] = {
    "LegalHoldState": _object(
        ("sphere_id", "legal_hold"), {"sphere_id": {"type": "string"}, "legal_hold": _HOLD}
    ),
    "RetentionState": _object(
        (
            "sphere_id",
            "retention_days",
            "effective_days",
            "retained_from",
            "offset",
            "oldest_ms",
            "run_ms",
            "legal_hold",
        ),
        {
            "sphere_id": {"type": "string"},
            "retention_days": {"type": ["integer", "null"], "minimum": 1},
            "effective_days": {"type": ["integer", "null"], "minimum": 1},
            "retained_from": {"type": "integer", "minimum": 0},
            "offset": {"type": "integer", "minimum": 0},
            "oldest_ms": _NULL_MS,
            "run_ms": _NULL_MS,
            "legal_hold": _HOLD,
        },
    ),
}

_SPHERE = "/admin/spheres/{sphere_id}"
_R = HoldRoutes
HOLD_ROUTES: tuple[AccountRoute, ...] = (
    AccountRoute(
        "GET",
        f"{_SPHERE}/retention",
        _R._status,
        "A sphere's retention: its period, horizon, oldest post, last pass and legal hold.",
        {"$ref": "#/components/schemas/RetentionState"},
        admin=True,
    ),
    AccountRoute(
        "PUT",
        f"{_SPHERE}/legal-hold",
        _R._hold,
        "Set (or replace) a sphere's legal hold: no retention, no deletion (audited).",
        {"$ref": "#/components/schemas/LegalHoldState"},
        admin=True,
        body=_object(
            ("reason",),
            {
                "reason": {"type": "string", "minLength": 1, "maxLength": MAX_HOLD_REASON_CHARS},
                "until_ms": _NULL_MS,
            },
            closed=True,
        ),
    ),
    AccountRoute(
        "DELETE",
        f"{_SPHERE}/legal-hold",
        _R._release,
        "Lift a sphere's legal hold (audited).",
        {"$ref": "#/components/schemas/LegalHoldState"},
        admin=True,
    ),
)
