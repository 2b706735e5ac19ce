"""A sample request for every row of the operation table.

``SAMPLES`` maps each client frame to one or more named samples. A sample builds its request
from a ``Context`` (the sphere, a post, a member to act on, ...) and says what the case needs:
a sphere of its own when an allowed request changes the sphere or the caller's standing
(``fresh``), a member of its own to act on (``fresh_target``), frames the owner sends first
(``prepare``), and the refusals about a particular object that the row documents for a caller
who holds the right (``object_errors``: the last owner leaving is a ``conflict``). A row of the
table without a sample fails the matrix test.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from protocol import (
    MIN_MUTE_S,
    AcceptCharter,
    AcceptInvitation,
    AddMember,
    AnswerRequest,
    Auth,
    Ban,
    CreateSphere,
    DeclineInvitation,
    Delete,
    DeleteSphere,
    Edit,
    ErrorCode,
    ExportSphere,
    Frame,
    GetCharter,
    GetThread,
    History,
    HistoryMode,
    Invite,
    Join,
    Leave,
    ListAudit,
    ListBans,
    ListInvitations,
    ListMembers,
    ListMentions,
    ListPins,
    ListReports,
    ListRequests,
    ListSpheres,
    ListThreads,
    MarkRead,
    MessageId,
    Mute,
    OpenDirect,
    Pin,
    Ping,
    Privacy,
    Publish,
    React,
    RemoveMember,
    Report,
    ReportReason,
    RequestJoin,
    RevokeInvitation,
    Role,
    SetCharter,
    SetRole,
    SphereId,
    Subscribe,
    TransferOwnership,
    Typing,
    Unban,
    Unmute,
    Unpin,
    Unreact,
    Unsubscribe,
    UpdateSphere,
    UserId,
    WithdrawRequest,
)
from server.access import Right

# The sphere types of the matrix: all but global, whose members are its organisation's, all of
# them, by design (no standing but member is set up in one); its rows of the rights table are
# covered by tests/e2e/test_organisations.py and tests/unit/server/test_access.py.
MATRIX_TYPES = tuple(p for p in Privacy if p is not Privacy.GLOBAL)

# The standings of the matrix: the rights table's, plus ``removed`` (an outsider who was a
# member: the table does not tell them apart, the server must not either). A direct
# conversation has only participants (role member) and outsiders: ``DIRECT_STANDINGS``; there
# ``removed`` is a participant who left.
STANDINGS = (
    "owner",
    "admin",
    "publisher",
    "member",
    "visitor",
    "muted",
    "outsider",
    "banned",
    "removed",
)
DIRECT_STANDINGS = ("member", "outsider", "removed")


@dataclass(frozen=True, slots=True)
class Context:
    """What a sample request may name: one case's sphere and the things in it."""

    sphere_id: SphereId
    privacy: Privacy
    standing: str
    caller_id: UserId
    token: str  # the caller's bearer token
    owner_id: UserId
    post: int  # a post of the owner
    own_post: int  # the caller's own post (a reply to ``post``); ``post`` if they never wrote
    target_id: UserId  # a member (role ``member``) to act on
    stranger_id: UserId  # a user with no tie to the sphere
    invitation_id: str  # the invitation ``prepare`` made, or a placeholder
    charter_version: int  # the charter ``prepare`` set, or 0
    seq: int  # unique per case

    def message_id(self) -> MessageId:
        return MessageId(f"matrix-{self.seq}")


Build = Callable[[Context], Frame]
NO_INVITATION = "i_none"


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    build: Build
    fresh: bool = False  # a sphere of its own per case (state changes would leak otherwise)
    fresh_target: bool = False  # a member of its own to act on, per case
    fresh_stranger: bool = False  # a user of its own with no tie to the sphere, per case
    # Frames the owner sends in a fresh sphere before the case; ``first``: before the caller's
    # standing is set up (an invitation to the caller is made while they are an outsider).
    prepare: Callable[[Context], Sequence[Frame]] | None = None
    prepare_first: bool = False
    # The right an object rule adds to the row's (another's post: ``delete_any``).
    also_needs: tuple[Right, ...] = ()
    # Documented refusals on the object, for a caller who holds the right.
    object_errors: frozenset[ErrorCode] = frozenset()
    handshake: bool = False  # the first frame of a new connection
    cleanup: Build | None = None  # sent after an allowed case, on the same connection


def _one(name: str, build: Build, **options: object) -> tuple[Sample, ...]:
    return (Sample(name, build, **options),)  # type: ignore[arg-type]


_GONE = frozenset({ErrorCode.NOT_FOUND, ErrorCode.CONFLICT})  # nothing there to undo
_TWICE = frozenset({ErrorCode.CONFLICT})  # already in that state

SAMPLES: Mapping[type[Frame], tuple[Sample, ...]] = {
    Auth: _one("handshake", lambda c: Auth(token=c.token, protocol=1), handshake=True),
    Ping: _one("ping", lambda c: Ping()),
    Subscribe: _one(
        "live",
        lambda c: Subscribe(sphere_id=c.sphere_id),
        cleanup=lambda c: Unsubscribe(sphere_id=c.sphere_id),
    ),
    Unsubscribe: _one("unsubscribe", lambda c: Unsubscribe(sphere_id=c.sphere_id)),
    Typing: _one("typing", lambda c: Typing(sphere_id=c.sphere_id)),
    Publish: (
        Sample(
            "post",
            lambda c: Publish(sphere_id=c.sphere_id, message_id=c.message_id(), body="a post"),
        ),
        Sample(
            "reply",
            lambda c: Publish(
                sphere_id=c.sphere_id, message_id=c.message_id(), body="a reply", reply_to=c.post
            ),
        ),
    ),
    Edit: _one(
        "own-post",
        lambda c: Edit(
            sphere_id=c.sphere_id, message_id=c.message_id(), target=c.own_post, body="edited"
        ),
    ),
    Delete: (
        Sample(
            "own-post",
            lambda c: Delete(sphere_id=c.sphere_id, message_id=c.message_id(), target=c.own_post),
            fresh=True,
        ),
        Sample(
            "others-post",
            lambda c: Delete(sphere_id=c.sphere_id, message_id=c.message_id(), target=c.post),
            fresh=True,
            also_needs=(Right.DELETE_ANY,),
        ),
    ),
    History: _one("page", lambda c: History(sphere_id=c.sphere_id, limit=10)),
    MarkRead: _one("marker", lambda c: MarkRead(sphere_id=c.sphere_id, offset=c.post)),
    React: _one(
        "react",
        lambda c: React(
            sphere_id=c.sphere_id, message_id=c.message_id(), target=c.post, emoji="👍"
        ),
        object_errors=_TWICE,
    ),
    Unreact: _one(
        "unreact",
        lambda c: Unreact(
            sphere_id=c.sphere_id, message_id=c.message_id(), target=c.post, emoji="🎉"
        ),
        object_errors=_GONE,
    ),
    Pin: _one(
        "pin",
        lambda c: Pin(sphere_id=c.sphere_id, message_id=c.message_id(), target=c.post),
        object_errors=_TWICE,
    ),
    Unpin: _one(
        "unpin",
        lambda c: Unpin(sphere_id=c.sphere_id, message_id=c.message_id(), target=c.post),
        object_errors=_GONE,
    ),
    ListPins: _one("pins", lambda c: ListPins(sphere_id=c.sphere_id)),
    GetThread: _one("thread", lambda c: GetThread(sphere_id=c.sphere_id, root=c.post)),
    ListThreads: _one("threads", lambda c: ListThreads(sphere_id=c.sphere_id, limit=5)),
    ListMentions: _one("mentions", lambda c: ListMentions(limit=5)),
    ExportSphere: _one("archive", lambda c: ExportSphere(sphere_id=c.sphere_id)),
    ListSpheres: _one("discover", lambda c: ListSpheres(discover=True, limit=5)),
    # A direct conversation is opened, not created: from one, the caller creates a private one.
    CreateSphere: _one(
        "create",
        lambda c: CreateSphere(
            name="made", privacy=Privacy.PRIVATE if c.privacy is Privacy.DIRECT else c.privacy
        ),
    ),
    # With a user of the organisation everyone of the matrix shares (no right: the store
    # checks that both are in it); a pair's second opening answers the same conversation.
    OpenDirect: _one(
        "with-user", lambda c: OpenDirect(user_ids=[c.stranger_id]), fresh_stranger=True
    ),
    UpdateSphere: (
        Sample("settings", lambda c: UpdateSphere(sphere_id=c.sphere_id, name="renamed")),
        # The same type again: the right is checked, nothing changes.
        Sample("type", lambda c: UpdateSphere(sphere_id=c.sphere_id, privacy=c.privacy)),
        # Narrowing hides the older posts from outsiders of a public sphere: a sphere of its own.
        Sample(
            "history",
            lambda c: UpdateSphere(sphere_id=c.sphere_id, history=HistoryMode.SINCE_JOINING),
            fresh=True,
        ),
    ),
    DeleteSphere: _one("delete", lambda c: DeleteSphere(sphere_id=c.sphere_id), fresh=True),
    SetCharter: _one(
        "set", lambda c: SetCharter(sphere_id=c.sphere_id, text="Be kind."), fresh=True
    ),
    GetCharter: _one("read", lambda c: GetCharter(sphere_id=c.sphere_id)),
    AcceptCharter: _one(
        "accept",
        lambda c: AcceptCharter(sphere_id=c.sphere_id, version=max(1, c.charter_version)),
        fresh=True,
        prepare=lambda c: [SetCharter(sphere_id=c.sphere_id, text="Be kind.")],
        object_errors=_TWICE,  # a member who accepted it already (the owner who set it)
    ),
    ListAudit: _one("log", lambda c: ListAudit(sphere_id=c.sphere_id, limit=5)),
    Join: _one("join", lambda c: Join(sphere_id=c.sphere_id), fresh=True),
    Leave: _one(
        "leave",
        lambda c: Leave(sphere_id=c.sphere_id),
        fresh=True,
        object_errors=_TWICE,  # the last owner
    ),
    ListMembers: _one("members", lambda c: ListMembers(sphere_id=c.sphere_id, limit=5)),
    AddMember: _one(
        "add",
        lambda c: AddMember(sphere_id=c.sphere_id, user_id=c.stranger_id),
        fresh_stranger=True,
    ),
    SetRole: _one(
        "demote",
        lambda c: SetRole(sphere_id=c.sphere_id, user_id=c.target_id, role=Role.VISITOR),
        fresh_target=True,
    ),
    RemoveMember: _one(
        "remove",
        lambda c: RemoveMember(sphere_id=c.sphere_id, user_id=c.target_id),
        fresh_target=True,
    ),
    TransferOwnership: _one(
        "transfer",
        lambda c: TransferOwnership(sphere_id=c.sphere_id, user_id=c.target_id),
        fresh=True,
        fresh_target=True,
    ),
    Invite: _one(
        "invite",
        lambda c: Invite(sphere_id=c.sphere_id, user_id=c.stranger_id, role=Role.VISITOR),
        fresh_stranger=True,
    ),
    ListInvitations: (
        Sample("own", lambda c: ListInvitations(limit=5)),
        Sample("of-sphere", lambda c: ListInvitations(sphere_id=c.sphere_id, limit=5)),
    ),
    RevokeInvitation: _one(
        "revoke",
        lambda c: RevokeInvitation(invitation_id=c.invitation_id),
        fresh=True,
        fresh_stranger=True,
        prepare=lambda c: [Invite(sphere_id=c.sphere_id, user_id=c.stranger_id)],
        # Its inviter (the owner here) or an administrator: who may list every invitation.
        also_needs=(Right.LIST_INVITATIONS,),
    ),
    AcceptInvitation: _one(
        "accept",
        lambda c: AcceptInvitation(invitation_id=c.invitation_id),
        fresh=True,
        prepare=lambda c: [Invite(sphere_id=c.sphere_id, user_id=c.caller_id)],
        prepare_first=True,
        # A member already (invited before being added), a banned invitee, or the owner, who
        # has no invitation to accept.
        object_errors=frozenset({ErrorCode.CONFLICT, ErrorCode.FORBIDDEN, ErrorCode.NOT_FOUND}),
    ),
    DeclineInvitation: _one(
        "decline",
        lambda c: DeclineInvitation(invitation_id=c.invitation_id),
        fresh=True,
        prepare=lambda c: [Invite(sphere_id=c.sphere_id, user_id=c.caller_id)],
        prepare_first=True,
        object_errors=frozenset({ErrorCode.CONFLICT, ErrorCode.NOT_FOUND}),
    ),
    RequestJoin: _one(
        "ask",
        lambda c: RequestJoin(sphere_id=c.sphere_id, comment="let me in"),
        fresh=True,
        object_errors=_TWICE,  # a member already, or a sphere that needs no approval
    ),
    WithdrawRequest: _one(
        "withdraw", lambda c: WithdrawRequest(sphere_id=c.sphere_id), object_errors=_GONE
    ),
    ListRequests: _one("requests", lambda c: ListRequests(sphere_id=c.sphere_id, limit=5)),
    AnswerRequest: _one(
        "refuse",
        lambda c: AnswerRequest(sphere_id=c.sphere_id, user_id=c.stranger_id, accept=False),
        object_errors=_GONE,  # nobody asked
    ),
    Ban: _one("ban", lambda c: Ban(sphere_id=c.sphere_id, user_id=c.target_id), fresh_target=True),
    Unban: _one(
        "unban",
        lambda c: Unban(sphere_id=c.sphere_id, user_id=c.stranger_id),
        object_errors=_GONE,  # not banned
    ),
    ListBans: _one("bans", lambda c: ListBans(sphere_id=c.sphere_id, limit=5)),
    Mute: _one(
        "mute",
        lambda c: Mute(sphere_id=c.sphere_id, user_id=c.target_id, duration_s=MIN_MUTE_S),
        fresh_target=True,
    ),
    Unmute: _one(
        "unmute",
        lambda c: Unmute(sphere_id=c.sphere_id, user_id=c.target_id),
        object_errors=_GONE,  # not muted
    ),
    Report: _one(
        "report",
        lambda c: Report(sphere_id=c.sphere_id, target=c.post, reason=ReportReason.SPAM),
    ),
    ListReports: _one("reports", lambda c: ListReports(sphere_id=c.sphere_id, limit=5)),
}
