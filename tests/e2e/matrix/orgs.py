"""The organisation dimension of the permission matrix: every organisation row x org standing.

Generated from the operation table (rows that name an ``org_right``, and ``list_orgs``), the
organisation rights table (``server.access.org_rights``) and a sample per row. The standings
are the table's: ``manager`` (the server's administrator, who manages the organisation
``default``), ``member`` (a user the administrator created) and ``stranger`` (a user the
manager removed from it). A cell passes when the answer is the one the table implies: the
row's reply (or a refusal the sample documents) when the standing holds the right,
``forbidden`` for a member who lacks it, and for a stranger ``not_found`` with exactly the
code and message an organisation that does not exist gets.

Each case gets users and a sphere of its own, so cases that change the organisation's
membership cannot disturb each other; the samples change no policy.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx

from protocol import (
    AddOrgMember,
    CreateSphere,
    ErrorCode,
    Frame,
    GetOrg,
    ListOrgAudit,
    ListOrgMembers,
    ListOrgs,
    ListOrgSpheres,
    ManageSphere,
    OrgId,
    OrgPolicySet,
    OrgRole,
    Privacy,
    RemoveOrgMember,
    SetOrgRole,
    SphereId,
    UpdateOrg,
    UserId,
)
from server.access.org_rights import ORG_NOT_FOUND, OrgStanding, org_standing_allows
from server.operations import BY_FRAME
from tests.e2e.matrix.wire import Answer, Session, over_http, route_for
from tests.support import ServerProcess

ORG = OrgId("default")
MISSING_ORG = OrgId("o_matrix_missing")
ORG_STANDINGS = tuple(s.value for s in OrgStanding)
# Why: the org rows are few; this many cases at once keep the server busy without a queue.
CONCURRENT_CASES = 16
# Why: the whole dimension takes seconds; past this, something is stuck and the run stops.
ORG_MATRIX_TIMEOUT_S = 180.0


@dataclass(frozen=True, slots=True)
class OrgContext:
    """What a sample request may name: the organisation and what the case set up in it."""

    org_id: OrgId
    target_id: UserId  # a member of the organisation to act on
    outsider_id: UserId  # a user outside it, to add
    sphere_id: SphereId  # a sphere of the organisation the caller is not a member of


@dataclass(frozen=True, slots=True)
class OrgSample:
    name: str
    build: Callable[[OrgContext], Frame]
    # Documented refusals on the object, for a caller who holds the right.
    object_errors: frozenset[ErrorCode] = frozenset()


def _one(name: str, build: Callable[[OrgContext], Frame]) -> tuple[OrgSample, ...]:
    return (OrgSample(name, build),)


ORG_SAMPLES: Mapping[type[Frame], tuple[OrgSample, ...]] = {
    ListOrgs: _one("mine", lambda c: ListOrgs()),
    GetOrg: _one("read", lambda c: GetOrg(org_id=c.org_id)),
    # The value it has already: the right is checked, nothing changes for the other cases.
    UpdateOrg: _one(
        "policies", lambda c: UpdateOrg(org_id=c.org_id, policies=OrgPolicySet(visitors=False))
    ),
    ListOrgMembers: _one("directory", lambda c: ListOrgMembers(org_id=c.org_id, limit=5)),
    AddOrgMember: _one("add", lambda c: AddOrgMember(org_id=c.org_id, user_id=c.outsider_id)),
    RemoveOrgMember: _one(
        "remove", lambda c: RemoveOrgMember(org_id=c.org_id, user_id=c.target_id)
    ),
    SetOrgRole: _one(
        "same-role",
        lambda c: SetOrgRole(org_id=c.org_id, user_id=c.target_id, role=OrgRole.MEMBER),
    ),
    ListOrgAudit: _one("log", lambda c: ListOrgAudit(org_id=c.org_id, limit=5)),
    ListOrgSpheres: _one("portal", lambda c: ListOrgSpheres(org_id=c.org_id, limit=5)),
    ManageSphere: _one("appoint", lambda c: ManageSphere(org_id=c.org_id, sphere_id=c.sphere_id)),
    CreateSphere: _one(
        "in-org", lambda c: CreateSphere(name="made", privacy=Privacy.OPEN, org_id=c.org_id)
    ),
}


@dataclass(frozen=True, slots=True)
class OrgCell:
    case: str
    problem: str | None  # None: the answer is the expected one


def org_expectation(frame: Frame, standing: OrgStanding) -> str:
    """What the organisation rights table says of this request: allowed, forbidden, hidden."""
    right = BY_FRAME[type(frame)].org_right
    if right is None or org_standing_allows(right, standing):
        return "allowed"
    return "hidden" if standing is OrgStanding.STRANGER else "forbidden"


def org_judge(
    frame: Frame, sample: OrgSample, expected: str, answer: Answer, ghost: Answer | None
) -> str | None:
    reply = BY_FRAME[type(frame)].reply.TYPE
    if expected == "allowed":
        if answer.kind == reply:
            return None
        if answer.kind == "error" and answer.code in sample.object_errors:
            return None
        return f"allowed: expected {reply}, got {answer}"
    if expected == "forbidden":
        if answer.kind == "error" and answer.code == ErrorCode.FORBIDDEN:
            return None
        return f"refused: expected forbidden, got {answer}"
    if (answer.kind, answer.code, answer.message) != ("error", "not_found", ORG_NOT_FOUND):
        return f"hidden: expected not_found ({ORG_NOT_FOUND!r}), got {answer}"
    if ghost is not None and ghost != answer:
        return f"hidden: answered {answer}, but an organisation that does not exist gets {ghost}"
    return None


@dataclass
class OrgActor:
    user_id: UserId
    session: Session
    http: httpx.AsyncClient


class OrgWorld:
    def __init__(self, server: ServerProcess, admin: httpx.AsyncClient) -> None:
        self.server = server
        self.admin = admin  # the manager's HTTP client, which sets cases up
        self.actors: dict[OrgStanding, OrgActor] = {}
        self._names = itertools.count(1)
        self._cases = asyncio.Semaphore(CONCURRENT_CASES)

    async def user(self, *, inside: bool) -> tuple[UserId, str]:
        reply = await self.admin.post(
            "/api/v1/admin/users", json={"name": f"org matrix {next(self._names)}"}
        )
        assert reply.status_code == 201, reply.text
        data = reply.json()
        user_id = UserId(data["user_id"])
        if not inside:
            gone = await self.admin.delete(f"/api/v1/orgs/{ORG}/members/{user_id}")
            assert gone.status_code == 200, gone.text
        return user_id, data["token"]

    async def actor(self, standing: OrgStanding) -> OrgActor:
        if standing is OrgStanding.MANAGER:
            token = self.server.admin_token
            user_id = UserId("")
        else:
            user_id, token = await self.user(inside=standing is OrgStanding.MEMBER)
        session = await Session.open(self.server.ws_url, token)
        return OrgActor(user_id, session, self.server.http(token))

    async def context(self) -> OrgContext:
        target, _ = await self.user(inside=True)
        outsider, _ = await self.user(inside=False)
        _, owner_token = await self.user(inside=True)
        async with self.server.http(owner_token) as owner:
            made = await owner.post("/api/v1/spheres", json={"name": "theirs"})
        assert made.status_code == 201, made.text
        return OrgContext(ORG, target, outsider, SphereId(made.json()["sphere"]["sphere_id"]))

    async def run(
        self, frame_type: type[Frame], sample: OrgSample, standing: OrgStanding, transport: str
    ) -> tuple[tuple[str, str], OrgCell]:
        async with self._cases:
            frame = sample.build(await self.context())
            expected = org_expectation(frame, standing)
            answer = await self._send(frame, standing, transport)
            ghost = None
            if expected == "hidden" and getattr(frame, "org_id", None) is not None:
                ghost = await self._send(
                    dataclasses.replace(frame, org_id=MISSING_ORG),  # type: ignore[type-var]
                    standing,
                    transport,
                )
        row = f"{frame_type.TYPE}:{sample.name}"
        problem = org_judge(frame, sample, expected, answer, ghost)
        return (row, standing.value), OrgCell(transport, problem)

    async def _send(self, frame: Frame, standing: OrgStanding, transport: str) -> Answer:
        actor = self.actors[standing]
        if transport == "websocket":
            return await actor.session.request(frame)
        http = route_for(frame)
        assert http is not None, f"{frame.TYPE} has no route for this sample"
        return await over_http(actor.http, frame, http)


_PROBE = OrgContext(ORG, UserId("u_probe"), UserId("u_probe"), SphereId("s_probe"))


async def run_org_matrix(server: ServerProcess) -> dict[tuple[str, str], list[OrgCell]]:
    """Every organisation sample, per org standing and transport, grouped by (row, standing)."""
    results: dict[tuple[str, str], list[OrgCell]] = {}
    async with asyncio.timeout(ORG_MATRIX_TIMEOUT_S), server.http(server.admin_token) as admin:
        world = OrgWorld(server, admin)
        try:
            for standing in OrgStanding:
                world.actors[standing] = await world.actor(standing)
            runs = [
                world.run(frame_type, sample, standing, transport)
                for frame_type, samples in ORG_SAMPLES.items()
                for sample in samples
                for standing in OrgStanding
                for transport in (
                    ["websocket"] + (["http"] if route_for(sample.build(_PROBE)) else [])
                )
            ]
            for key, cell in await asyncio.gather(*runs):
                results.setdefault(key, []).append(cell)
        finally:
            for actor in world.actors.values():
                await actor.session.aclose()
                await actor.http.aclose()
    return results
