"""The users and spheres the matrix runs in, and the runner that computes every cell.

One user per standing; the ``owner`` user creates every sphere (a direct conversation: opens
it, with the ``member`` and ``removed`` users and the ``visitor`` user, who only fills it to a
group, so that each opening is a new conversation). Each sphere type gets one
shared sphere in which every standing is set up once (members added with their role, a post
of each, then muted, removed or banned); a case whose allowed request would change the sphere
or the caller's standing gets a sphere of its own, set up for its standing only. Cases run
concurrently on a few pipelined connections per user; every request is bounded in time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import httpx

from protocol import (
    MAX_MUTE_S,
    Ack,
    AddMember,
    Ban,
    CharterInfo,
    CreateSphere,
    ErrorCode,
    Frame,
    HistoryMode,
    InvitationInfo,
    Leave,
    Mute,
    OpenDirect,
    Privacy,
    Publish,
    RemoveMember,
    Role,
    SphereId,
    SphereInfo,
    UserId,
)
from server.access import SPHERE_NOT_FOUND, Right, Standing, standing_allows
from server.operations import BY_FRAME, OPERATIONS
from tests.e2e.matrix.samples import (
    DIRECT_STANDINGS,
    MATRIX_TYPES,
    NO_INVITATION,
    SAMPLES,
    STANDINGS,
    Context,
    Sample,
)
from tests.e2e.matrix.wire import (
    Answer,
    Session,
    answer_of,
    first_frame,
    over_http,
    route_for,
)
from tests.support import ServerProcess

ROLE_OF = {
    "admin": Role.ADMIN,
    "publisher": Role.PUBLISHER,
    "member": Role.MEMBER,
    "visitor": Role.VISITOR,
    "muted": Role.MEMBER,
    "banned": Role.MEMBER,
    "removed": Role.MEMBER,
}
# Why: enough pipelined connections per user to keep the server busy, few enough to open fast.
SESSIONS_PER_USER = 4
OWNER_SESSIONS = 16
CONCURRENT_CASES = 128
# Why: the whole matrix takes seconds; past this, something is stuck and the run stops.
MATRIX_TIMEOUT_S = 240.0
MISSING_SPHERE = SphereId("s_matrix_missing")
# Why: a retryable error means "the same request may succeed later"; a client retries it.
RETRYABLE = frozenset(code.value for code in ErrorCode if code.retryable)
# Why 10: a node streams at most 4 exports at once (the rest are answered `unavailable`), and
# the matrix asks for many at once; 10 linear backoffs wait up to 2.25 s in all.
RETRIES = 10
RETRY_BACKOFF_S = 0.05


class SetupError(Exception):
    """A step that sets up a case was refused (often: its operation is not built yet)."""


@dataclass
class Actor:
    """A user of the matrix, with pipelined connections and an HTTP client."""

    user_id: UserId
    token: str
    sessions: list[Session]
    http: httpx.AsyncClient
    turn: itertools.count[int] = field(default_factory=itertools.count)

    def session(self) -> Session:
        return self.sessions[next(self.turn) % len(self.sessions)]

    async def call(self, frame: Frame) -> Frame:
        reply = await self.session().call(frame)
        answer = reply if isinstance(reply, Answer) else answer_of(reply)
        if isinstance(reply, Answer) or answer.kind == "error":
            raise SetupError(f"{frame.TYPE}: {answer}")
        return reply

    async def aclose(self) -> None:
        for session in self.sessions:
            await session.aclose()
        await self.http.aclose()


@dataclass
class Sphere:
    """A sphere and what its setup left in it, per standing."""

    sphere_id: SphereId
    privacy: Privacy
    post: int
    own_posts: dict[str, int] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)  # standing -> why its setup failed
    invitation_id: str = NO_INVITATION
    charter_version: int = 0


@dataclass(frozen=True, slots=True)
class Case:
    frame: type[Frame]
    sample: Sample
    standing: str
    privacy: Privacy
    transport: str  # "websocket" or "http"

    @property
    def row(self) -> str:
        return f"{self.frame.TYPE}:{self.sample.name}"

    def __str__(self) -> str:
        return f"{self.privacy.value}/{self.transport}"


@dataclass(frozen=True, slots=True)
class Cell:
    case: Case
    expected: str  # "allowed", "forbidden" or "hidden"
    answer: Answer | None  # None: the case could not be set up
    problem: str | None  # None: the answer is the expected one


def expectation(frame: Frame, sample: Sample, standing: str, privacy: Privacy) -> str:
    """What the rights table says of this request: allowed, forbidden, or hidden."""
    rights = (*BY_FRAME[type(frame)].rights_for(frame), *sample.also_needs)
    held = Standing.OUTSIDER if standing == "removed" else Standing(standing)
    if all(standing_allows(right, privacy, held) for right in rights):
        return "allowed"
    return "forbidden" if standing_allows(Right.SEE, privacy, held) else "hidden"


def judge(
    frame: Frame, sample: Sample, expected: str, answer: Answer, ghost: Answer | None
) -> str | None:
    """Why ``answer`` is wrong for the expectation, or None."""
    reply = BY_FRAME[type(frame)].reply.TYPE
    if expected == "allowed":
        if answer.kind == reply:
            return None
        # An object-level refusal the sample documents; never "sphere not found" for a
        # sphere the caller may act in.
        documented = answer.kind == "error" and answer.code in sample.object_errors
        if documented and (answer.code, answer.message) != (ErrorCode.NOT_FOUND, SPHERE_NOT_FOUND):
            return None
        return f"allowed: expected {reply}, got {answer}"
    if expected == "forbidden":
        if answer.kind == "error" and answer.code == ErrorCode.FORBIDDEN:
            return None
        return f"refused: expected forbidden, got {answer}"
    if answer.kind != "error" or answer.code != ErrorCode.NOT_FOUND:
        return f"hidden: expected not_found, got {answer}"
    if ghost is not None and ghost != answer:
        return f"hidden: answered {answer}, but a sphere that does not exist gets {ghost}"
    return None


class World:
    def __init__(self, server: ServerProcess, actors: dict[str, Actor], pool: list[UserId]) -> None:
        self.server = server
        self.actors = actors
        self.owner = actors["owner"]
        self._pool = pool  # users with no tie to any sphere; each serves once per sphere
        self._taken: Counter[SphereId] = Counter()
        self._seq = itertools.count(1)
        self._cases = asyncio.Semaphore(CONCURRENT_CASES)
        self.shared: dict[Privacy, Sphere] = {}

    def stranger(self, sphere: Sphere) -> UserId:
        """A user with no tie to ``sphere`` yet (and none after, but for this case's)."""
        taken = self._taken[sphere.sphere_id]
        self._taken[sphere.sphere_id] += 1
        return self._pool[taken]

    async def sphere(
        self,
        privacy: Privacy,
        standings: Iterable[str],
        first: Callable[[Context], Sequence[Frame]] | None = None,
    ) -> Sphere:
        """A new sphere of the owner's with each of ``standings`` set up in it."""
        # The whole history: every standing replies to the owner's first post, which the
        # history promise's default would hide from those added after it.
        if privacy is Privacy.DIRECT:
            standings = [s for s in standings if s in DIRECT_STANDINGS]
            together = [self.actors[s].user_id for s in ("member", "removed", "visitor")]
            opened: Frame = OpenDirect(user_ids=together)
        else:
            opened = CreateSphere(name="matrix", privacy=privacy, history=HistoryMode.FULL)
        info = await self.owner.call(opened)
        assert isinstance(info, SphereInfo)
        sphere_id = info.sphere.sphere_id
        post = await self.owner.call(
            Publish(sphere_id=sphere_id, message_id=self._message_id(), body="the owner's post")
        )
        assert isinstance(post, Ack)
        sphere = Sphere(sphere_id, privacy, post.offset)
        for standing in standings:
            try:
                if first is not None:
                    await self._prepare(sphere, first(self.context(sphere, standing)))
                await self._establish(sphere, standing)
            except SetupError as exc:
                sphere.broken[standing] = str(exc)
        return sphere

    async def _establish(self, sphere: Sphere, standing: str) -> None:
        actor = self.actors[standing]
        direct = sphere.privacy is Privacy.DIRECT  # its participants are in it from the start
        if standing == "outsider":
            return
        if standing != "owner" and not direct:
            await self.owner.call(
                AddMember(sphere_id=sphere.sphere_id, user_id=actor.user_id, role=ROLE_OF[standing])
            )
        # A reply: every member may reply, even in a restricted sphere.
        own = await actor.call(
            Publish(
                sphere_id=sphere.sphere_id,
                message_id=self._message_id(),
                body="my reply",
                reply_to=sphere.post,
            )
        )
        assert isinstance(own, Ack)
        sphere.own_posts[standing] = own.offset
        who = {"sphere_id": sphere.sphere_id, "user_id": actor.user_id}
        if standing == "muted":
            await self.owner.call(Mute(**who, duration_s=MAX_MUTE_S))  # type: ignore[arg-type]
        elif standing == "removed" and direct:  # nobody removes a participant: they leave
            await actor.call(Leave(sphere_id=sphere.sphere_id))
        elif standing == "removed":
            await self.owner.call(RemoveMember(**who))  # type: ignore[arg-type]
        elif standing == "banned":
            await self.owner.call(Ban(**who))  # type: ignore[arg-type]

    async def _prepare(self, sphere: Sphere, frames: Sequence[Frame]) -> None:
        for frame in frames:
            reply = await self.owner.call(frame)
            if isinstance(reply, InvitationInfo):
                sphere.invitation_id = reply.invitation.invitation_id
            elif isinstance(reply, CharterInfo):
                sphere.charter_version = reply.version

    def _message_id(self) -> str:
        return f"setup-{next(self._seq)}"

    def context(self, sphere: Sphere, standing: str, **given: object) -> Context:
        actor = self.actors[standing]
        base = Context(
            sphere_id=sphere.sphere_id,
            privacy=sphere.privacy,
            standing=standing,
            caller_id=actor.user_id,
            token=actor.token,
            owner_id=self.owner.user_id,
            post=sphere.post,
            own_post=sphere.own_posts.get(standing, sphere.post),
            target_id=UserId("u_matrix_nobody"),
            stranger_id=UserId("u_matrix_nobody"),
            invitation_id=sphere.invitation_id,
            charter_version=sphere.charter_version,
            seq=next(self._seq),
        )
        return dataclasses.replace(base, **given)  # type: ignore[arg-type]

    # -- one case ------------------------------------------------------------------------------

    async def run(self, case: Case) -> Cell:
        async with self._cases:
            try:
                ctx = await self._set_up(case)
            except SetupError as exc:
                return Cell(case, "-", None, f"setup failed: {exc}")
            frame = case.sample.build(ctx)
            expected = expectation(frame, case.sample, case.standing, case.privacy)
            session = self.actors[case.standing].session()
            answer = await self._send(case, frame, session)
            ghost = None
            if expected == "hidden" and getattr(frame, "sphere_id", None) is not None:
                ghost = await self._send(case, _elsewhere(frame), session)
            if case.sample.cleanup is not None and answer.kind != "error":
                await session.request(case.sample.cleanup(ctx))  # where the case ran
            return Cell(case, expected, answer, judge(frame, case.sample, expected, answer, ghost))

    async def _set_up(self, case: Case) -> Context:
        sample = case.sample
        if sample.fresh:
            first = sample.prepare if sample.prepare_first and case.standing != "owner" else None
            sphere = await self.sphere(case.privacy, [case.standing], first)
        else:
            sphere = self.shared[case.privacy]
        if case.standing in sphere.broken:
            raise SetupError(f"{case.standing}: {sphere.broken[case.standing]}")
        given: dict[str, object] = {}
        if sample.fresh_target and case.privacy is Privacy.DIRECT:
            # Nobody adds to a conversation: a participant it was opened with is the target.
            given["target_id"] = self.actors["visitor"].user_id
        elif sample.fresh_target:
            target = self.stranger(sphere)
            await self.owner.call(AddMember(sphere_id=sphere.sphere_id, user_id=target))
            given["target_id"] = target
        if sample.fresh_stranger:
            given["stranger_id"] = self.stranger(sphere)
        ctx = self.context(sphere, case.standing, **given)
        if sample.prepare is not None and sample.fresh and not sample.prepare_first:
            await self._prepare(sphere, sample.prepare(ctx))
            ctx = dataclasses.replace(
                ctx, invitation_id=sphere.invitation_id, charter_version=sphere.charter_version
            )
        return ctx

    async def _send(self, case: Case, frame: Frame, session: Session) -> Answer:
        """The answer to ``frame``, retried as a client must when the error is retryable."""
        for attempt in range(1, RETRIES + 1):
            answer = await self._send_once(case, frame, session)
            if answer.code not in RETRYABLE or attempt == RETRIES:
                return answer
            await asyncio.sleep(RETRY_BACKOFF_S * attempt)
        raise AssertionError("unreachable")

    async def _send_once(self, case: Case, frame: Frame, session: Session) -> Answer:
        if case.sample.handshake:
            return await first_frame(self.server.ws_url, frame)
        if case.transport == "websocket":
            return await session.request(frame)
        http = route_for(frame)
        assert http is not None, f"{frame.TYPE} has no route for this sample"
        return await over_http(self.actors[case.standing].http, frame, http)


def _elsewhere(frame: Frame) -> Frame:
    """The same request about a sphere that does not exist."""
    return dataclasses.replace(frame, sphere_id=MISSING_SPHERE)  # type: ignore[type-var]


def cases_of(frame: type[Frame], sample: Sample) -> list[Case]:
    """The cases of one sample: every standing and type, on each transport it travels."""
    probe = sample.build(_PROBE)
    transports = ["websocket"] + (["http"] if route_for(probe) is not None else [])
    return [
        Case(frame, sample, standing, privacy, transport)
        for standing in STANDINGS
        for privacy in MATRIX_TYPES
        if _applies(sample, standing, privacy)
        for transport in transports
    ]


def _applies(sample: Sample, standing: str, privacy: Privacy) -> bool:
    """Does the case exist? A direct conversation has only participants and outsiders, and
    holds no invitation nor charter for a sample to prepare."""
    if privacy is not Privacy.DIRECT:
        return True
    return standing in DIRECT_STANDINGS and sample.prepare is None


# A context to learn which route a sample's request takes (only its shape matters).
_PROBE = Context(
    sphere_id=SphereId("s_probe"),
    privacy=Privacy.PRIVATE,
    standing="member",
    caller_id=UserId("u_probe"),
    token="t",
    owner_id=UserId("u_probe"),
    post=1,
    own_post=1,
    target_id=UserId("u_probe"),
    stranger_id=UserId("u_probe"),
    invitation_id=NO_INVITATION,
    charter_version=0,
    seq=0,
)


async def open_actor(server: ServerProcess, sessions: int) -> Actor:
    user = await server.new_user()
    opened = [await Session.open(server.ws_url, user.token) for _ in range(sessions)]
    return Actor(UserId(user.user_id), user.token, opened, server.http(user.token))


async def new_strangers(server: ServerProcess, count: int) -> list[UserId]:
    """Users that never connect: targets of add, invite, ban, mute and the like."""
    limit = asyncio.Semaphore(16)
    async with server.http(server.admin_token) as admin:

        async def one(n: int) -> UserId:
            async with limit:
                reply = await admin.post("/api/v1/admin/users", json={"name": f"stranger {n}"})
            assert reply.status_code == 201, reply.text
            return UserId(reply.json()["user_id"])

        return list(await asyncio.gather(*(one(n) for n in range(count))))


def strangers_needed(cases: Sequence[Case]) -> int:
    """The most users one sphere needs: each serves once per sphere, in every sphere."""
    shared = Counter(
        c.privacy for c in cases if not c.sample.fresh for _ in range(_strangers_of(c.sample))
    )
    fresh = max((_strangers_of(c.sample) for c in cases if c.sample.fresh), default=0)
    return max([fresh, *shared.values()])


def _strangers_of(sample: Sample) -> int:
    return int(sample.fresh_target) + int(sample.fresh_stranger)


Results = dict[tuple[str, str], list[Cell]]


async def run_matrix(server: ServerProcess) -> Results:
    """Every case of every sample, grouped by (row, standing)."""
    cases = [
        case
        for op in OPERATIONS
        for sample in SAMPLES.get(op.frame, ())
        for case in cases_of(op.frame, sample)
    ]
    async with asyncio.timeout(MATRIX_TIMEOUT_S):
        actors: dict[str, Actor] = {}
        try:
            for standing in STANDINGS:
                count = OWNER_SESSIONS if standing == "owner" else SESSIONS_PER_USER
                actors[standing] = await open_actor(server, count)
            pool = await new_strangers(server, strangers_needed(cases))
            world = World(server, actors, pool)
            spheres = await asyncio.gather(*(world.sphere(p, STANDINGS) for p in MATRIX_TYPES))
            world.shared = dict(zip(MATRIX_TYPES, spheres, strict=True))
            cells = await asyncio.gather(*(world.run(case) for case in cases))
        finally:
            for actor in actors.values():
                await actor.aclose()
    results: Results = {}
    for cell in cells:
        results.setdefault((cell.case.row, cell.case.standing), []).append(cell)
    return results
