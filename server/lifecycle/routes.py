"""The organisation lifecycle routes of the HTTP API (docs/protocol.md, section 19).

``ORG_ROUTES`` lists them in the shape of the account routes
(``server.sessions.route_table.AccountRoute``), so the OpenAPI document describes them alike:
the server administrators' routes under ``/admin/orgs`` (create, list, show, suspend, resume,
delete, export), and an organisation's export by its managers. Each is a thin shell over
``OrgLifecycleService`` or ``org_archive``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from protocol import CloisonError, ErrorCode, OrgId, ProtocolViolation, UserId
from server.auth import Principal
from server.lifecycle.export import org_archive
from server.lifecycle.service import NO_SUCH_ORG, OrgLifecycleService, OrgSummary
from server.operations import now_ms
from server.privacy.export import not_head
from server.privacy.streaming import ARCHIVE_HEADERS, ARCHIVE_SCHEMA, ExportSlots
from server.sessions.accounts import DEFAULT_PAGE, MAX_PAGE, Actor
from server.sessions.route_table import (
    AccountRoute,
    Endpoint,
    Handler,
    Respond,
    RouteShell,
    Schema,
)
from storage import OrgDeletionJob, OrgDeletionState, OrgRecord, OrgRole, Store

# An organisation id an administrator chooses: short, URL- and file-name-safe.
ORG_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
MANAGERS_ONLY = "organisation managers only"
SUSPENDED = "the organisation is suspended"  # as its spheres answer its members


class OrgRoutes(RouteShell):
    def __init__(
        self,
        service: OrgLifecycleService,
        store: Store,
        slots: ExportSlots,
        *,
        guard: Callable[[Handler], Endpoint],
        read_body: Callable[[Request], Awaitable[dict[str, Any]]],
        respond: Respond,
    ) -> None:
        super().__init__(ORG_ROUTES, guard=guard, read_body=read_body, respond=respond)
        self._service = service
        self._store = store
        self._slots = slots

    async def _create(self, request: Request, principal: Principal) -> Response:
        data = await self._body(request)
        extra = set(data) - {"name", "manager_id", "org_id"}
        if extra:
            raise ProtocolViolation(f"unexpected field {sorted(extra)[0]!r}")
        manager_id, org_id = data.get("manager_id"), data.get("org_id")
        if manager_id is not None and not isinstance(manager_id, str):
            raise ProtocolViolation("manager_id: expected a user id")
        if org_id is not None and not (isinstance(org_id, str) and ORG_ID.fullmatch(org_id)):
            raise ProtocolViolation("org_id: 1 to 64 letters, digits, '-' or '_'")
        org = await self._service.create(
            Actor.of(principal.user),
            data.get("name"),
            manager_id=UserId(manager_id) if manager_id else None,
            org_id=OrgId(org_id) if org_id else None,
        )
        return self._respond(org_json(org), 201)

    async def _list(self, request: Request, principal: Principal) -> Response:
        raw = request.query_params.get("limit", str(DEFAULT_PAGE))
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
            raise ProtocolViolation(f"limit: expected an integer from 1 to {MAX_PAGE}")
        limit = int(raw)
        after = request.query_params.get("after")
        orgs = await self._service.list(after=OrgId(after) if after else None, limit=limit)
        next_after = orgs[-1].org_id if len(orgs) == limit else None
        return self._respond({"orgs": [org_json(o) for o in orgs], "next_after": next_after}, 200)

    async def _show(self, request: Request, principal: Principal) -> Response:
        summary = await self._service.show(_org_id(request))
        return self._respond(summary_json(summary), 200)

    async def _suspend(self, request: Request, principal: Principal) -> Response:
        org = await self._service.set_suspended(Actor.of(principal.user), _org_id(request), True)
        return self._respond(org_json(org), 200)

    async def _resume(self, request: Request, principal: Principal) -> Response:
        org = await self._service.set_suspended(Actor.of(principal.user), _org_id(request), False)
        return self._respond(org_json(org), 200)

    async def _delete(self, request: Request, principal: Principal) -> Response:
        job = await self._service.delete(Actor.of(principal.user), _org_id(request))
        return self._respond(job_json(job), 202)

    async def _deletion(self, request: Request, principal: Principal) -> Response:
        return self._respond(job_json(await self._service.job(_org_id(request))), 200)

    async def _admin_export(self, request: Request, principal: Principal) -> Response:
        not_head(request)
        org = await self._store.get_org(_org_id(request))
        if org is None:
            raise CloisonError(NO_SUCH_ORG, code=ErrorCode.NOT_FOUND)
        return await org_archive(
            self._store, self._slots, org, principal.user.user_id, now_ms=now_ms()
        )

    async def _export(self, request: Request, principal: Principal) -> Response:
        """A manager's export: to anyone outside the organisation it does not exist."""
        not_head(request)
        org_id = _org_id(request)
        role = await self._store.org_role(org_id, principal.user.user_id)
        org = await self._store.get_org(org_id) if role is not None else None
        if org is None:
            raise CloisonError(NO_SUCH_ORG, code=ErrorCode.NOT_FOUND)
        if role is not OrgRole.MANAGER:
            raise CloisonError(MANAGERS_ONLY, code=ErrorCode.FORBIDDEN)
        if org.suspended:  # its data waits for it to be resumed, or for an administrator
            raise CloisonError(SUSPENDED, code=ErrorCode.FORBIDDEN)
        return await org_archive(
            self._store, self._slots, org, principal.user.user_id, now_ms=now_ms()
        )


def _org_id(request: Request) -> OrgId:
    return OrgId(request.path_params["org_id"])


def org_json(org: OrgRecord) -> dict[str, Any]:
    return {
        "org_id": org.org_id,
        "name": org.name,
        "created_ms": org.created_ms,
        "suspended_ms": org.suspended_ms,
    }


def summary_json(summary: OrgSummary) -> dict[str, Any]:
    deletion = summary.deletion
    return {
        **org_json(summary.org),
        "members": summary.members,
        "spheres": summary.spheres,
        "deletion": job_json(deletion) if deletion is not None else None,
    }


def job_json(job: OrgDeletionJob) -> dict[str, Any]:
    return {
        "org_id": job.org_id,
        "state": job.state.value,
        "mode": job.mode.value,
        "requested_ms": job.requested_ms,
        "requested_by": job.requested_by,
        "done_ms": job.done_ms,
        "spheres_deleted": job.spheres_deleted,
        "accounts_handed_over": job.accounts_handed_over,
        "members_scanned": job.members_scanned,
    }


_MS = {"type": "integer", "minimum": 0}
_NULL_MS = {"type": ["integer", "null"], "minimum": 0}
_COUNT = {"type": "integer", "minimum": 0}


def _object(required: tuple[str, ...], properties: Schema, *, closed: bool = False) -> Schema:
    schema: Schema = {"type": "object", "required": list(required), "properties": properties}
    if closed:
        schema["additionalProperties"] = False
    return schema


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


_ORG_PROPERTIES: Schema = {
    "org_id": {"type": "string"},
    "name": {"type": "string"},
    "created_ms": _MS,
    "suspended_ms": {**_NULL_MS, "description": "set: its members cannot sign in to it"},
}
_JOB_PROPERTIES: Schema = {
    "org_id": {"type": "string"},
    "state": {"type": "string", "enum": [s.value for s in OrgDeletionState]},
    "mode": {"type": "string", "enum": ["erase", "anonymise"]},
    "requested_ms": _MS,
    "requested_by": {"type": "string", "description": "a user id, or cli"},
    "done_ms": _NULL_MS,
    "spheres_deleted": _COUNT,
    "accounts_handed_over": {
        **_COUNT,
        "description": "accounts of members who belonged to it only, given to account deletion",
    },
    "members_scanned": {"type": "boolean"},
}
ORG_SCHEMAS: dict[str, Schema] = {
    "Organisation": _object(tuple(_ORG_PROPERTIES), _ORG_PROPERTIES),
    "OrganisationPage": _object(
        ("orgs", "next_after"),
        {
            "orgs": {"type": "array", "items": _ref("Organisation")},
            "next_after": {"type": ["string", "null"]},
        },
    ),
    "OrganisationSummary": _object(
        (*_ORG_PROPERTIES, "members", "spheres", "deletion"),
        {
            **_ORG_PROPERTIES,
            "members": _COUNT,
            "spheres": _COUNT,
            "deletion": {"oneOf": [{"type": "null"}, _ref("OrgDeletionJob")]},
        },
    ),
    "OrgDeletionJob": _object(tuple(_JOB_PROPERTIES), _JOB_PROPERTIES),
}

_ORG = "/admin/orgs/{org_id}"
_R = OrgRoutes
ORG_ROUTES: tuple[AccountRoute, ...] = (
    AccountRoute(
        "POST",
        "/admin/orgs",
        _R._create,
        "Create an organisation, with its first manager if given (audited).",
        _ref("Organisation"),
        status=201,
        admin=True,
        body=_object(
            ("name",),
            {
                "name": {"type": "string", "minLength": 1, "maxLength": 100},
                "manager_id": {"type": "string", "minLength": 1},
                "org_id": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"},
            },
            closed=True,
        ),
    ),
    AccountRoute(
        "GET",
        "/admin/orgs",
        _R._list,
        "Organisations by id.",
        _ref("OrganisationPage"),
        admin=True,
        query=(
            ("after", {"type": "string"}),
            (
                "limit",
                {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE},
            ),
        ),
    ),
    AccountRoute(
        "GET",
        _ORG,
        _R._show,
        "An organisation: its record, how many members and spheres, its deletion if any.",
        _ref("OrganisationSummary"),
        admin=True,
    ),
    AccountRoute(
        "POST",
        f"{_ORG}/suspend",
        _R._suspend,
        "Suspend an organisation: its members cannot sign in to it, its data is kept "
        "(audited; live subscriptions to its spheres end on every node).",
        _ref("Organisation"),
        admin=True,
    ),
    AccountRoute(
        "POST",
        f"{_ORG}/resume",
        _R._resume,
        "Resume a suspended organisation (audited).",
        _ref("Organisation"),
        admin=True,
    ),
    AccountRoute(
        "DELETE",
        _ORG,
        _R._delete,
        "Delete an organisation with all its data; the job runs in the background.",
        _ref("OrgDeletionJob"),
        status=202,
        admin=True,
    ),
    AccountRoute(
        "GET",
        f"{_ORG}/deletion",
        _R._deletion,
        "Where the deletion of an organisation stands.",
        _ref("OrgDeletionJob"),
        admin=True,
    ),
    AccountRoute(
        "GET",
        f"{_ORG}/export",
        _R._admin_export,
        "Download everything an organisation owns as one zip archive (audited).",
        ARCHIVE_SCHEMA,
        admin=True,
        media_type="application/zip",
        headers=ARCHIVE_HEADERS,
    ),
    AccountRoute(
        "GET",
        "/orgs/{org_id}/export",
        _R._export,
        "Download everything your organisation owns as one zip archive (its managers; "
        "audited). Private conversations only if its policy says so.",
        ARCHIVE_SCHEMA,
        media_type="application/zip",
        headers=ARCHIVE_HEADERS,
    ),
)
