"""The account deletion routes of the HTTP API (docs/protocol.md, sections 19 and 24).

``DELETION_ROUTES`` lists them in the shape of the account routes
(``server.sessions.route_table.AccountRoute``), so the OpenAPI document describes them alike;
each is a thin shell over ``AccountDeletion``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from protocol import ProtocolViolation, UserId
from server.auth import Principal
from server.operations import now_ms
from server.privacy.account_deletion import AccountDeletion
from server.sessions.accounts import Actor
from server.sessions.route_table import (
    AccountRoute,
    Endpoint,
    Handler,
    Respond,
    RouteShell,
    Schema,
)
from storage import DeletionJob, DeletionMode, DeletionState


class DeletionRoutes(RouteShell):
    def __init__(
        self,
        deletion: AccountDeletion,
        *,
        guard: Callable[[Handler], Endpoint],
        read_body: Callable[[Request], Awaitable[dict[str, Any]]],
        respond: Respond,
    ) -> None:
        super().__init__(DELETION_ROUTES, guard=guard, read_body=read_body, respond=respond)
        self._deletion = deletion

    async def _delete_me(self, request: Request, principal: Principal) -> Response:
        data = await self._body(request)
        if set(data) != {"confirm"}:
            extra = sorted(set(data) - {"confirm"})
            raise ProtocolViolation(
                f"unexpected field {extra[0]!r}" if extra else "confirm: required"
            )
        actor = Actor.of(principal.user)
        job = await self._deletion.request_own(actor, data["confirm"], at_ms=now_ms())
        return self._respond(job_json(job), 202)

    async def _delete_user(self, request: Request, principal: Principal) -> Response:
        user_id = UserId(request.path_params["user_id"])
        job = await self._deletion.request(Actor.of(principal.user), user_id, at_ms=now_ms())
        return self._respond(job_json(job), 202)

    async def _job(self, request: Request, principal: Principal) -> Response:
        user_id = UserId(request.path_params["user_id"])
        job = await self._deletion.job(Actor.of(principal.user), user_id)
        return self._respond(job_json(job), 200)


def job_json(job: DeletionJob) -> dict[str, Any]:
    return {
        "user_id": job.user_id,
        "state": job.state.value,
        "mode": job.mode.value,
        "requested_ms": job.requested_ms,
        "requested_by": job.requested_by,
        "done_ms": job.done_ms,
        "scanned": job.scanned,
        "spheres_left": job.spheres_left,
        "rewritten": job.rewritten,
    }


_MS = {"type": "integer", "minimum": 0}
_COUNT = {"type": "integer", "minimum": 0}
DELETION_SCHEMAS: dict[str, Schema] = {
    # The JSON Schema of ``job_json``.
    "DeletionJob": {
        "type": "object",
        "required": [
            "user_id",
            "state",
            "mode",
            "requested_ms",
            "requested_by",
            "done_ms",
            "scanned",
            "spheres_left",
            "rewritten",
        ],
        "properties": {
            "user_id": {"type": "string"},
            "state": {"type": "string", "enum": [s.value for s in DeletionState]},
            "mode": {"type": "string", "enum": [m.value for m in DeletionMode]},
            "requested_ms": _MS,
            "requested_by": {"type": "string", "description": "a user id, or cli"},
            "done_ms": {"anyOf": [_MS, {"type": "null"}]},
            "scanned": {"type": "boolean", "description": "every sphere was looked at"},
            "spheres_left": _COUNT,
            "rewritten": {**_COUNT, "description": "events rewritten"},
        },
    },
}

_JOB = {"$ref": "#/components/schemas/DeletionJob"}
_R = DeletionRoutes
DELETION_ROUTES: tuple[AccountRoute, ...] = (
    AccountRoute(
        "DELETE",
        "/me",
        _R._delete_me,
        "Delete your account (confirm: your user_id); the job runs in the background.",
        _JOB,
        status=202,
        body={
            "type": "object",
            "required": ["confirm"],
            "properties": {"confirm": {"type": "string"}},
            "additionalProperties": False,
        },
    ),
    AccountRoute(
        "DELETE",
        "/admin/users/{user_id}",
        _R._delete_user,
        "Delete a user's account; the job runs in the background.",
        _JOB,
        status=202,
        admin=True,
    ),
    AccountRoute(
        "GET",
        "/admin/users/{user_id}/deletion",
        _R._job,
        "Where the deletion of a user's account stands.",
        _JOB,
        admin=True,
    ),
)
