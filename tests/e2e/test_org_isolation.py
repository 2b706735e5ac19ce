"""Two organisations on one server: nothing of one reaches a member of the other.

Generated from the operation table (``server.operations.OPERATIONS``, with the permission
matrix's sample request per row, ``tests/e2e/matrix/samples.py``) and from every other route of
the HTTP API (the OpenAPI document, which the account, administration and privacy route tables
make). Organisation A is the default one; B is another, with members of its own.

- A member of B sends every request, over WebSocket and over HTTP, about every object of A
  (a sphere of every type, its posts, its members, its pending invitation) and gets exactly
  the answer the same request about objects that do not exist gets: code and message. A
  ``public`` sphere is the door an organisation opens: there the rights table's ``stranger``
  row is the answer, as in the permission matrix.
- B's owner of a sphere names A's users in every request that names a user, and gets the
  answer an id naming no user gets.
- Every other HTTP route with a path parameter answers about A's objects as about missing
  ones; none of B's listings, frames, mentions or presence carries anything of A.
- A visitor from B invited into one sphere of A sees that sphere and nothing else of A.
- A suspended organisation is ``forbidden`` to its members and unknown to everyone else.
- Answering about A's sphere takes the time answering about a missing one takes.

A row of the operation table with no sample, or a route parameter the sweep cannot fill,
fails the test that needs it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import re
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
import websockets

from protocol import (
    AcceptCharter,
    AcceptInvitation,
    Ack,
    AddMember,
    Auth,
    CreateSphere,
    ErrorCode,
    Frame,
    History,
    HistoryMode,
    InvitationInfo,
    Invite,
    JsonCodec,
    ListInvitations,
    ListMentions,
    ListOrgs,
    ListSpheres,
    OpenDirect,
    OrgId,
    Privacy,
    Publish,
    Role,
    SetCharter,
    SetRole,
    SphereId,
    SphereInfo,
    Subscribe,
    Subscribed,
    Typing,
    UserId,
    to_wire,
)
from server.access import Standing
from server.http_api import STATUS
from server.openapi import openapi_document
from server.operations import OPERATIONS
from storage import DEFAULT_ORG, ORG_SUSPENDED
from tests.e2e import orgs
from tests.e2e.conftest import start_server
from tests.e2e.matrix.orgs import ORG_SAMPLES, OrgContext
from tests.e2e.matrix.samples import SAMPLES, Context, Sample
from tests.e2e.matrix.wire import Answer, Session, first_frame, over_http, route_for
from tests.e2e.matrix.world import expectation, judge
from tests.signin.helpers import enrol, sign_in
from tests.support import ServerProcess

_CODEC = JsonCodec()

pytestmark = pytest.mark.slow

ORG_B = "o_isolation_b"
ORG_C = "o_isolation_c"
MISSING_SPHERE = SphereId("s_isolation_missing")
MISSING_USER = UserId("u_isolation_missing")
MISSING_INVITATION = "isolation-missing-invitation-000000000"
MISSING_TOKEN = "tk_isolation_missing"
# Every name and text of A's carries this, so that a frame or listing holding one shows.
SECRET = "a-secret"
SIGNER_PASSWORD = "correct horse battery staple"
_PARAM = re.compile(r"\{(\w+)\}")
# Why 200 and 2 ms: enough tries for a stable median on a loaded machine, and far below what
# one more store read or another code path would add.
TIMING_TRIES = 200
TIMING_MARGIN_MS = 2.0
# Why: the whole sweep takes seconds; past this, something is stuck.
SWEEP_TIMEOUT_S = 300.0
_METHODS_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


@dataclass
class Person:
    user_id: UserId
    token: str
    session: Session
    http: httpx.AsyncClient

    async def call(self, frame: Frame) -> Frame:
        reply = await self.session.call(frame)
        assert not isinstance(reply, Answer), f"{frame.TYPE}: {reply}"
        return reply

    async def aclose(self) -> None:
        await self.session.aclose()
        await self.http.aclose()


@dataclass(frozen=True, slots=True)
class ASphere:
    sphere_id: SphereId
    privacy: Privacy
    post: int
    invitation_id: str
    charter_version: int


class Recorder:
    """A connection that keeps every frame it receives, as text."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self.frames: list[str] = []
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, server: ServerProcess, token: str) -> Recorder:
        ws = await websockets.connect(server.ws_url, subprotocols=[_CODEC.subprotocol])  # type: ignore[list-item]
        await ws.send(_CODEC.encode(Auth(token=token, protocol=1)))
        return cls(ws)

    async def send(self, frame: Frame) -> None:
        await self._ws.send(_CODEC.encode(frame))

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for data in self._ws:
                self.frames.append(data if isinstance(data, str) else data.decode())

    async def aclose(self) -> None:
        await self._ws.close()
        await self._task


@dataclass
class Tenants:
    server: ServerProcess
    people: dict[str, Person]
    a_spheres: list[ASphere]  # one of each type, and the one the visitor entered
    visited: ASphere
    b_spheres: dict[Privacy, SphereId]
    secrets: set[str]  # A's ids and names, as text
    a_token_id: str
    a_session_id: str  # a sign-in session of a member of A

    def leaks(self, text: str) -> list[str]:
        return sorted(secret for secret in self.secrets if secret in text)


# What the sweep found: check name -> problems (none: the check passed).
Findings = dict[str, list[str]]


async def _person(server: ServerProcess, name: str) -> Person:
    user = await server.new_user(name)
    session = await Session.open(server.ws_url, user.token)
    return Person(UserId(user.user_id), user.token, session, server.http(user.token))


async def _a_sphere(people: dict[str, Person], privacy: Privacy, name: str) -> ASphere:
    owner, member = people["a_owner"], people["a_member"]
    if privacy is Privacy.DIRECT:  # opened with its participants; no charter, no invitation
        opened: Frame = OpenDirect(user_ids=[member.user_id])
    else:
        opened = CreateSphere(name=name, privacy=privacy, history=HistoryMode.FULL)
    info = await owner.call(opened)
    assert isinstance(info, SphereInfo), info
    sphere_id = info.sphere.sphere_id
    body = f"{SECRET} post for <@{member.user_id}> and <@{people['b_prober'].user_id}>"
    if privacy is Privacy.DIRECT:
        post = await owner.call(Publish(sphere_id=sphere_id, message_id=f"p-{name}", body=body))
        assert isinstance(post, Ack), post
        return ASphere(sphere_id, privacy, post.offset, MISSING_INVITATION, 0)
    if privacy is not Privacy.GLOBAL:  # a global sphere holds every member of A already
        await owner.call(AddMember(sphere_id=sphere_id, user_id=member.user_id))
    # Mentions of a member, and of a member of B (who cannot be mentioned here: nothing).
    post = await owner.call(Publish(sphere_id=sphere_id, message_id=f"p-{name}", body=body))
    assert isinstance(post, Ack), post
    assert post.offset > 0
    charter = await owner.call(SetCharter(sphere_id=sphere_id, text=f"{SECRET} charter"))
    if privacy is Privacy.GLOBAL:  # nobody of A is outside it to invite
        return ASphere(sphere_id, privacy, post.offset, MISSING_INVITATION, 1)
    invited = await owner.call(Invite(sphere_id=sphere_id, user_id=people["a_invitee"].user_id))
    assert isinstance(invited, InvitationInfo), invited
    version = int(getattr(charter, "version", 1))
    return ASphere(sphere_id, privacy, post.offset, invited.invitation.invitation_id, version)


async def _set_up(server: ServerProcess) -> Tenants:
    people: dict[str, Person] = {}
    for name in ("a_owner", "a_member", "a_invitee"):
        people[name] = await _person(server, f"{SECRET} {name}")
    for name in ("b_prober", "b_peer", "visitor", "c_member"):
        people[name] = await _person(server, name)
    orgs.create_org(server, ORG_B, "B")
    orgs.create_org(server, ORG_C, "C")
    # B's prober and C's member manage their organisations: they create spheres of every type.
    orgs.move_to_org(server, [people[name].user_id for name in ("b_peer", "visitor")], ORG_B)
    orgs.move_to_org(server, [people["b_prober"].user_id], ORG_B, "manager")
    orgs.move_to_org(server, [people["c_member"].user_id], ORG_C, "manager")
    orgs.set_policies(server, DEFAULT_ORG, visitors=True)
    orgs.set_org_role(server, people["a_owner"].user_id, "manager")  # creates A's global sphere
    a_spheres = [await _a_sphere(people, p, f"{SECRET} {p.value}") for p in Privacy]
    visited = await _a_sphere(people, Privacy.PRIVATE, f"{SECRET} visited")
    b_spheres: dict[Privacy, SphereId] = {}
    prober = people["b_prober"]
    # Nobody adds members to those: B's member probes the others.
    for privacy in [p for p in Privacy if p not in (Privacy.DIRECT, Privacy.GLOBAL)]:
        info = await prober.call(CreateSphere(name=f"b {privacy.value}", privacy=privacy))
        assert isinstance(info, SphereInfo), info
        b_spheres[privacy] = info.sphere.sphere_id
    orgs.move_spheres(server, b_spheres.values(), ORG_B)
    for sphere_id in b_spheres.values():
        await prober.call(AddMember(sphere_id=sphere_id, user_id=people["b_peer"].user_id))
    async with server.http(server.admin_token) as admin:
        listed = await admin.get(f"/api/v1/admin/users/{people['a_member'].user_id}/tokens")
    assert listed.status_code == 200, listed.text
    body = listed.json()
    token_id = str((body.get("tokens") if isinstance(body, dict) else body)[0]["token_id"])
    # A member of A who signs in with a password: their session is one of A's objects.
    enrol(server, "a signer", "signer@a.example", SIGNER_PASSWORD)
    session_id = str((await sign_in(server, "signer@a.example", SIGNER_PASSWORD))["session_id"])
    secrets = {SECRET, token_id, session_id}
    secrets |= {people[name].user_id for name in ("a_owner", "a_member", "a_invitee")}
    secrets |= {s.sphere_id for s in [*a_spheres, visited]}
    secrets |= {s.invitation_id for s in [*a_spheres, visited]}
    return Tenants(
        server, people, [*a_spheres, visited], visited, b_spheres, secrets, token_id, session_id
    )


# -- requests about A's objects ----------------------------------------------------------------


def _context(t: Tenants, caller: str, sphere: ASphere | None) -> Context:
    """The objects a sample names: A's (``sphere``), or, with None, ones that do not exist."""
    person = t.people[caller]
    a_member = t.people["a_member"].user_id
    return Context(
        sphere_id=sphere.sphere_id if sphere else MISSING_SPHERE,
        privacy=sphere.privacy if sphere else Privacy.PRIVATE,
        standing=Standing.STRANGER.value,
        caller_id=person.user_id,
        token=person.token,
        owner_id=t.people["a_owner"].user_id if sphere else MISSING_USER,
        post=sphere.post if sphere else 2,
        own_post=sphere.post if sphere else 2,
        target_id=a_member if sphere else MISSING_USER,
        stranger_id=t.people["a_invitee"].user_id if sphere else MISSING_USER,
        invitation_id=sphere.invitation_id if sphere else MISSING_INVITATION,
        charter_version=sphere.charter_version if sphere else 1,
        seq=0,
    )


async def _answer(t: Tenants, caller: str, frame: Frame, sample: Sample, http: bool) -> Answer:
    person = t.people[caller]
    if sample.handshake:
        return await first_frame(t.server.ws_url, frame)
    if not http:
        return await person.session.request(frame)
    route = route_for(frame)
    assert route is not None
    return await over_http(person.http, frame, route)


def _echoed(answer: Answer, t: Tenants, sphere: ASphere | None) -> Answer:
    """``answer`` with the ids the request named put back to a mark: an error that repeats
    the id it was sent ("no user u_...") tells nothing but that id."""
    if answer.message is None:
        return answer
    ctx = _context(t, "b_prober", sphere)
    message = answer.message
    for named in (ctx.sphere_id, ctx.target_id, ctx.stranger_id, ctx.invitation_id):
        message = message.replace(named, "<id>")
    return dataclasses.replace(answer, message=message)


async def _about_a(t: Tenants, caller: str, spheres: list[ASphere]) -> Findings:
    """Every sample of every row, about each of ``spheres``: as about nothing, or, in a
    public sphere, what the rights table says of a stranger."""
    found: Findings = {}
    for op in OPERATIONS:
        for sample in SAMPLES.get(op.frame, ()):
            row = f"{op.frame.TYPE}:{sample.name}"
            problems = found.setdefault(row, [])
            for sphere in spheres:
                frame = sample.build(dataclasses.replace(_context(t, caller, sphere), seq=1))
                ghost = sample.build(
                    dataclasses.replace(_context(t, caller, None), privacy=sphere.privacy, seq=2)
                )
                for http in [False] + ([True] if route_for(frame) is not None else []):
                    where = f"{sphere.privacy.value}/{'http' if http else 'websocket'}"
                    answer = await _answer(t, caller, frame, sample, http)
                    nothing = await _answer(t, caller, ghost, sample, http)
                    # About the public sphere itself, or an invitation to it.
                    names_sphere = getattr(frame, "sphere_id", None) == sphere.sphere_id or (
                        getattr(frame, "invitation_id", None) == sphere.invitation_id
                    )
                    if sphere.privacy is Privacy.PUBLIC and names_sphere:
                        expected = expectation(frame, sample, Standing.STRANGER, sphere.privacy)
                        wrong = judge(frame, sample, expected, answer, None)
                    elif _echoed(answer, t, sphere) != _echoed(nothing, t, None):
                        wrong = f"answered {answer}; about nothing: {nothing}"
                    else:
                        wrong = None
                    if wrong is not None:
                        problems.append(f"{where}: {wrong}")
    return found


async def _about_org_a(t: Tenants) -> Findings:
    """Every organisation request about A (its id, members, a sphere of it), sent by B's
    member: answered as about an organisation that does not exist."""
    found: Findings = {}
    private = next(s for s in t.a_spheres if s.privacy is Privacy.PRIVATE)
    of_a = OrgContext(
        org_id=DEFAULT_ORG,
        target_id=t.people["a_member"].user_id,
        outsider_id=t.people["a_invitee"].user_id,
        sphere_id=private.sphere_id,
    )
    nothing = OrgContext(
        org_id=OrgId("o_isolation_missing"),
        target_id=MISSING_USER,
        outsider_id=MISSING_USER,
        sphere_id=MISSING_SPHERE,
    )
    marks = [*dataclasses.astuple(of_a), *dataclasses.astuple(nothing)]
    person = t.people["b_prober"]
    for frame_type, samples in ORG_SAMPLES.items():
        for sample in samples:
            problems = found.setdefault(f"{frame_type.TYPE}:{sample.name}", [])
            frame, ghost = sample.build(of_a), sample.build(nothing)
            for http in [False] + ([True] if route_for(frame) is not None else []):
                answers = []
                for one in (frame, ghost):
                    if http:
                        route = route_for(one)
                        assert route is not None
                        answer = await over_http(person.http, one, route)
                    else:
                        answer = await person.session.request(one)
                    message = answer.message or ""
                    for mark in marks:
                        message = message.replace(mark, "<id>")
                    answers.append(dataclasses.replace(answer, message=message or None))
                if answers[0] != answers[1]:
                    where = "http" if http else "websocket"
                    problems.append(f"{where}: about A {answers[0]}; about nothing {answers[1]}")
    return found


async def _a_users_in_b(t: Tenants) -> Findings:
    """Every sample that names a user, sent by B's owner of a sphere of B's, naming A's user:
    answered as naming no user."""
    found: Findings = {}
    prober = t.people["b_prober"]
    a_member = t.people["a_member"].user_id
    for op in OPERATIONS:
        if "user_id" not in {f.name for f in dataclasses.fields(op.frame)}:
            continue
        for sample in SAMPLES.get(op.frame, ()):
            problems = found.setdefault(f"{op.frame.TYPE}:{sample.name}", [])
            for privacy, sphere_id in t.b_spheres.items():
                base = Context(
                    sphere_id=sphere_id,
                    privacy=privacy,
                    standing=Standing.OWNER.value,
                    caller_id=prober.user_id,
                    token=prober.token,
                    owner_id=prober.user_id,
                    post=1,
                    own_post=1,
                    target_id=a_member,
                    stranger_id=a_member,
                    invitation_id=MISSING_INVITATION,
                    charter_version=0,
                    seq=0,
                )
                frame = sample.build(base)
                if getattr(frame, "user_id", None) != a_member:
                    continue  # the sample names the caller, not another user
                ghost = sample.build(
                    dataclasses.replace(base, target_id=MISSING_USER, stranger_id=MISSING_USER)
                )
                for http in [False] + ([True] if route_for(frame) is not None else []):
                    answer = await _answer(t, "b_prober", frame, sample, http)
                    nothing = await _answer(t, "b_prober", ghost, sample, http)
                    if answer != nothing or answer.kind != "error":
                        where = f"{privacy.value}/{'http' if http else 'websocket'}"
                        problems.append(f"{where}: answered {answer}; naming nobody: {nothing}")
    return found


# -- every other route -------------------------------------------------------------------------


def _other_routes() -> list[tuple[str, str]]:
    """(method, path) of every HTTP route that is no row of the operation table."""
    from_table = {(h.method, h.path) for op in OPERATIONS for h in op.http}
    document = openapi_document(STATUS, version="test")
    return sorted(
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if (method.upper(), path) not in from_table
    )


def _route_params(t: Tenants) -> tuple[dict[str, str], dict[str, str]]:
    """Each path parameter: naming A's object, and naming nothing."""
    private = next(s for s in t.a_spheres if s.privacy is Privacy.PRIVATE)
    of_a = {
        "user_id": t.people["a_member"].user_id,
        "token_id": t.a_token_id,
        "session_id": t.a_session_id,
        "sphere_id": private.sphere_id,
        "invitation_id": private.invitation_id,
        "org_id": DEFAULT_ORG,
    }
    nothing = {
        "user_id": MISSING_USER,
        "token_id": MISSING_TOKEN,
        "session_id": "ses_isolation_missing",
        "sphere_id": MISSING_SPHERE,
        "invitation_id": MISSING_INVITATION,
        "org_id": "o_isolation_missing",
    }
    return of_a, nothing


async def _http_answer(client: httpx.AsyncClient, method: str, path: str) -> tuple[int, str]:
    body = {} if method in _METHODS_WITH_BODY else None
    reply = await client.request(method, "/api/v1" + path, json=body)
    try:
        data = reply.json()
    except ValueError:
        return reply.status_code, reply.text[:200]
    if isinstance(data, dict) and "code" in data:
        return reply.status_code, f"{data.get('code')}: {data.get('message')}"
    return reply.status_code, orjson.dumps(data).decode()


async def _routes(t: Tenants) -> Findings:
    """Every route with a path parameter, about A's objects and about nothing; and every
    GET route without one (B's own things), which must hold nothing of A."""
    found: Findings = {}
    of_a, nothing = _route_params(t)
    client = t.people["b_prober"].http
    for method, path in _other_routes():
        problems = found.setdefault(f"{method} {path}", [])
        params = _PARAM.findall(path)
        unknown = [p for p in params if p not in of_a]
        if unknown:
            problems.append(f"no sample for the path parameters {unknown} (add one here)")
            continue
        if not params:
            if method == "GET":
                _, text = await _http_answer(client, method, path)
                if leaks := t.leaks(text):
                    problems.append(f"carries {leaks}")
            continue
        answer = await _http_answer(client, method, _PARAM.sub(lambda m: of_a[m[1]], path))
        ghost = await _http_answer(client, method, _PARAM.sub(lambda m: nothing[m[1]], path))
        if answer != ghost:
            problems.append(f"about A: {answer}; about nothing: {ghost}")
        if leaks := t.leaks(answer[1]):
            problems.append(f"carries {leaks}")
    return found


# -- listings, mentions, presence, frames ------------------------------------------------------


async def _listings(t: Tenants, caller: str) -> list[str]:
    """What ``caller``'s own listings and every frame they received hold of A."""
    person = t.people[caller]
    problems = []
    for frame in (
        ListSpheres(),
        ListSpheres(discover=True),
        ListMentions(),
        ListInvitations(),
        ListOrgs(),
    ):
        reply = await person.call(frame)
        text = _CODEC.encode(reply)
        if leaks := t.leaks(text if isinstance(text, str) else text.decode()):
            problems.append(f"{frame.TYPE} {to_wire(frame)} carries {leaks}")
    return problems


async def _live(t: Tenants) -> list[str]:
    """B's members, subscribed to B's spheres, while A's members post, type, join and are
    mentioned with them: no frame B receives carries anything of A."""
    recorder = await Recorder.open(t.server, t.people["b_prober"].token)
    try:
        for sphere_id in t.b_spheres.values():
            await recorder.send(Subscribe(sphere_id=sphere_id))
        a_owner, a_member = t.people["a_owner"], t.people["a_member"]
        prober = t.people["b_prober"].user_id
        for n, sphere in enumerate(t.a_spheres):
            await a_member.session.request(Subscribe(sphere_id=sphere.sphere_id))
            await a_owner.session.request(Typing(sphere_id=sphere.sphere_id))
            body = f"{SECRET} live <@{prober}>"
            await a_owner.call(Publish(sphere_id=sphere.sphere_id, message_id=f"l-{n}", body=body))
        # B speaks too, so that its frames come after A's acts in every sphere's order.
        for n, sphere_id in enumerate(t.b_spheres.values()):
            await t.people["b_peer"].call(
                Publish(sphere_id=sphere_id, message_id=f"b-{n}", body="b's post")
            )
        await asyncio.sleep(0.5)  # what a relay or presence notice could still be carrying
    finally:
        await recorder.aclose()
    problems = [f"received {t.leaks(f)}: {f[:160]}" for f in recorder.frames if t.leaks(f)]
    if not any("b's post" in f for f in recorder.frames):
        problems.append("received none of B's own posts: the recording proves nothing")
    return problems


# -- the visitor, suspension and timing --------------------------------------------------------


async def _visitor(t: Tenants) -> Findings:
    """A member of B invited into one sphere of A as a visitor: sees the invitation across
    the boundary, that sphere, and nothing else of A."""
    found: Findings = {}
    visitor, owner = t.people["visitor"], t.people["a_owner"]
    visited = t.visited
    problems = found.setdefault("entry", [])
    member_role = await owner.session.request(
        Invite(sphere_id=visited.sphere_id, user_id=visitor.user_id, role=Role.MEMBER)
    )
    if member_role.code != ErrorCode.FORBIDDEN:
        problems.append(f"invited from outside as a member: {member_role}")
    invited = await owner.call(
        Invite(sphere_id=visited.sphere_id, user_id=visitor.user_id, role=Role.VISITOR)
    )
    assert isinstance(invited, InvitationInfo), invited
    mine = await visitor.call(ListInvitations())
    ids = [i.invitation_id for i in getattr(mine, "invitations", [])]
    if invited.invitation.invitation_id not in ids:
        problems.append(f"the invitee does not see the invitation: {ids}")
    accepted = await visitor.session.request(
        AcceptInvitation(invitation_id=invited.invitation.invitation_id)
    )
    if accepted.kind != SphereInfo.TYPE:
        problems.append(f"accepting: {accepted}")
        return found
    promoted = await owner.session.request(
        SetRole(sphere_id=visited.sphere_id, user_id=visitor.user_id, role=Role.MEMBER)
    )
    if promoted.code != ErrorCode.FORBIDDEN:
        problems.append(f"promoted above visitor while outside: {promoted}")
    await visitor.call(AcceptCharter(sphere_id=visited.sphere_id, version=visited.charter_version))
    subscribed = await visitor.call(Subscribe(sphere_id=visited.sphere_id))
    if not isinstance(subscribed, Subscribed) or set(subscribed.online) - {visitor.user_id}:
        problems.append(f"subscribing shows others' presence: {subscribed}")
    spheres = await visitor.call(ListSpheres())
    of_a = {s.sphere_id for s in getattr(spheres, "spheres", [])} & {
        s.sphere_id for s in t.a_spheres
    }
    if of_a != {visited.sphere_id}:
        problems.append(f"lists A's spheres {sorted(of_a)}, not just the one visited")
    discovered = await visitor.call(ListSpheres(discover=True))
    if t.leaks(str(to_wire(discovered))):
        problems.append("discovery lists spheres of A")
    others = [s for s in t.a_spheres if s != visited]
    found.update(
        {f"elsewhere {row}": p for row, p in (await _about_a(t, "visitor", others)).items()}
    )
    return found


async def _suspension(t: Tenants) -> list[str]:
    """Suspending C: its member is refused (forbidden, naming it), B's gets not_found, even
    for C's public sphere, whose page is gone until the suspension ends."""
    problems = []
    member = t.people["c_member"]
    info = await member.call(CreateSphere(name="c", privacy=Privacy.PUBLIC))
    assert isinstance(info, SphereInfo)
    sphere_id = info.sphere.sphere_id
    orgs.move_spheres(t.server, [sphere_id], ORG_C)
    orgs.set_suspended(t.server, ORG_C, True)
    try:
        for frame in (
            History(sphere_id=sphere_id),
            Publish(sphere_id=sphere_id, message_id="c-1", body="c's post"),
            Typing(sphere_id=sphere_id),
        ):
            own = await member.session.request(frame)
            if (own.code, own.message) != (ErrorCode.FORBIDDEN, ORG_SUSPENDED):
                problems.append(f"{frame.TYPE} by its member: {own}")
            other = await t.people["b_prober"].session.request(frame)
            ghost = await t.people["b_prober"].session.request(
                dataclasses.replace(frame, sphere_id=MISSING_SPHERE)  # type: ignore[type-var]
            )
            if other != ghost:
                problems.append(f"{frame.TYPE} by a stranger: {other}, not {ghost}")
        page = await t.people["b_prober"].http.get(f"/public/{sphere_id}")
        if page.status_code != 404:
            problems.append(f"the public page of a suspended organisation: {page.status_code}")
    finally:
        orgs.set_suspended(t.server, ORG_C, False)
    page = await t.people["b_prober"].http.get(f"/public/{sphere_id}")
    if page.status_code != 200:
        problems.append(f"the public page after the suspension ended: {page.status_code}")
    return problems


async def _timing(t: Tenants) -> list[str]:
    """The median answer time about A's private sphere and about a missing one, alternated."""
    private = next(s for s in t.a_spheres if s.privacy is Privacy.PRIVATE)
    client = t.people["b_prober"].http
    times: dict[str, list[float]] = {"a": [], "missing": []}
    for _ in range(TIMING_TRIES):
        for name, sphere_id in (("a", private.sphere_id), ("missing", MISSING_SPHERE)):
            start = time.perf_counter()
            reply = await client.get(f"/api/v1/spheres/{sphere_id}/messages")
            times[name].append((time.perf_counter() - start) * 1000)
            assert reply.status_code == 404, reply.text
    medians = {name: statistics.median(values) for name, values in times.items()}
    gap = abs(medians["a"] - medians["missing"])
    if gap > TIMING_MARGIN_MS:
        return [f"medians {medians} ms differ by {gap:.2f} ms"]
    return []


# -- the run -----------------------------------------------------------------------------------


async def _sweep(server: ServerProcess) -> Findings:
    async with asyncio.timeout(SWEEP_TIMEOUT_S):
        t = await _set_up(server)
        try:
            found: Findings = {}
            found.update(
                {
                    f"b about a {k}": v
                    for k, v in (await _about_a(t, "b_prober", t.a_spheres)).items()
                }
            )
            found.update({f"a users {k}": v for k, v in (await _a_users_in_b(t)).items()})
            found.update({f"b about a {k}": v for k, v in (await _about_org_a(t)).items()})
            found.update({f"route {k}": v for k, v in (await _routes(t)).items()})
            found["listings"] = await _listings(t, "b_prober")
            found["live"] = await _live(t)
            found.update({f"visitor {k}": v for k, v in (await _visitor(t)).items()})
            found["suspension"] = await _suspension(t)
            found["timing"] = await _timing(t)
            return found
        finally:
            for person in t.people.values():
                await person.aclose()


@pytest.fixture(scope="module")
def findings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Findings]:
    server = start_server(
        tmp_path_factory.mktemp("isolation"), "--sqlite-synchronous", "NORMAL", "--public-pages"
    )
    try:
        # In a thread of its own: the run has its own event loop, apart from the tests'.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            yield pool.submit(asyncio.run, _sweep(server)).result()
    finally:
        server.stop()


def _rows() -> list[Any]:
    """One test per row of the operation table and sample; a row without one fails."""
    params = []
    for op in OPERATIONS:
        names = [s.name for s in (*SAMPLES.get(op.frame, ()), *ORG_SAMPLES.get(op.frame, ()))]
        for name in names or ["no sample"]:
            params.append(pytest.param(f"{op.frame.TYPE}:{name}", id=f"{op.frame.TYPE}:{name}"))
    return params


@pytest.mark.parametrize("row", _rows())
def test_a_member_of_b_learns_nothing_of_a(findings: Findings, row: str) -> None:
    if row.endswith(":no sample"):
        pytest.fail(f"{row.split(':')[0]} has no sample in tests/e2e/matrix/")
    problems = findings[f"b about a {row}"] + findings.get(f"a users {row}", [])
    assert not problems, f"{row}:\n" + "\n".join(problems)


@pytest.mark.parametrize("route", [f"{m} {p}" for m, p in _other_routes()])
def test_every_other_route_answers_about_a_as_about_nothing(findings: Findings, route: str) -> None:
    problems = findings[f"route {route}"]
    assert not problems, f"{route}:\n" + "\n".join(problems)


@pytest.mark.parametrize("check", ["listings", "live", "suspension", "timing"])
def test_nothing_of_a_in_what_b_receives(findings: Findings, check: str) -> None:
    assert not findings[check], "\n".join(findings[check])


def test_a_visitor_sees_exactly_one_sphere(findings: Findings) -> None:
    problems = [f"{k}: {p}" for k, v in findings.items() if k.startswith("visitor ") for p in v]
    assert not problems, "\n".join(problems)
