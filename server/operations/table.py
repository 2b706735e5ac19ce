"""The operation table: every request a client can make, in one list.

Each row names the frame, the right it needs (``server.access.rights``), the rate class it
spends (``server.ratelimit``) and its HTTP routes. From this table the dispatcher checks
rights before any handler runs, the HTTP API mounts its routes, the OpenAPI document and the
docs tables are generated, and the permission-matrix test enumerates what to try. A request
that is not a row here cannot be made.

``org_right`` (``server.access.org_rights``) is checked against the organisation the frame
names (its ``org_id``; a frame that may leave it out, ``create_sphere``, names the caller's
only organisation), before ``right``. ``right`` is checked against the sphere the frame names
(its ``sphere_id``); a row whose
frame names no sphere (or leaves ``sphere_id`` out) is checked by its handler, which only
ever acts on the caller's own things (their spheres, invitations, mentions). ``when`` lists
fields that, when present, need a right of their own instead of ``right``: a reply needs
``reply``, not ``post``; changing a sphere's type needs ``change_type``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from protocol import (
    AcceptCharter,
    AcceptInvitation,
    Ack,
    AddMember,
    AddOrgMember,
    AnswerRequest,
    AuditList,
    Auth,
    Ban,
    BanList,
    CharterInfo,
    CreateSphere,
    DeclineInvitation,
    Delete,
    DeleteSphere,
    Edit,
    ExportInfo,
    ExportSphere,
    Frame,
    GetCharter,
    GetOrg,
    GetThread,
    History,
    HistoryPage,
    InvitationInfo,
    InvitationList,
    Invite,
    Join,
    JoinRequestList,
    Leave,
    ListAudit,
    ListBans,
    ListInvitations,
    ListMembers,
    ListMentions,
    ListOrgAudit,
    ListOrgMembers,
    ListOrgs,
    ListOrgSpheres,
    ListPins,
    ListReports,
    ListRequests,
    ListSpheres,
    ListThreads,
    ManageSphere,
    MarkRead,
    MemberList,
    MentionList,
    Mute,
    Ok,
    OpenDirect,
    OrgAuditList,
    OrgInfo,
    OrgList,
    OrgMemberList,
    OrgSphereList,
    Pin,
    Ping,
    Pong,
    Publish,
    React,
    RemoveMember,
    RemoveOrgMember,
    Report,
    ReportList,
    RequestJoin,
    RevokeInvitation,
    SetCharter,
    SetOrgRole,
    SetRole,
    SphereInfo,
    SphereList,
    Subscribe,
    Subscribed,
    ThreadList,
    ThreadPage,
    TransferOwnership,
    Typing,
    Unban,
    Unmute,
    Unpin,
    Unreact,
    Unsubscribe,
    Unsubscribed,
    UpdateOrg,
    UpdateSphere,
    Welcome,
    WithdrawRequest,
)
from server.access.org_rights import OrgRight
from server.access.rights import Right
from server.ratelimit import RateClass


@dataclass(frozen=True, slots=True)
class Http:
    """One HTTP route of an operation, under ``/api/v1``.

    Path parameters, query parameters (``query``: booleans and integers; ``text_query``:
    strings) and the JSON body are merged into the frame's fields.
    """

    method: str
    path: str
    query: tuple[str, ...] = ()
    text_query: tuple[str, ...] = ()
    status: int = 200  # on success; 201 for a created resource
    # The success body is an archive streamed as it is read (application/zip), planned from
    # the reply the row's handler gives; the reply itself travels over WebSocket only.
    stream: bool = False


@dataclass(frozen=True, slots=True)
class Operation:
    frame: type[Frame]
    rate: RateClass
    summary: str  # one line, for the docs and the OpenAPI document
    right: Right | None = None
    when: tuple[tuple[str, Right], ...] = ()
    http: tuple[Http, ...] = ()  # none: WebSocket only
    # Appends to the sphere's stream: acknowledged with ``ack``, idempotent on ``message_id``,
    # and sequenced in the order each connection sent them.
    writes: bool = False
    # The frame a success is answered with (over HTTP: the JSON body).
    reply: type[Frame] = field(kw_only=True)
    org_right: OrgRight | None = field(default=None, kw_only=True)

    def rights_for(self, frame: Frame) -> tuple[Right, ...]:
        """The rights ``frame`` needs in its sphere."""
        chosen = tuple(right for name, right in self.when if getattr(frame, name) is not None)
        if chosen:
            return chosen
        return (self.right,) if self.right is not None else ()


def _s(path: str = "") -> str:
    return "/spheres/{sphere_id}" + path


def _o(path: str = "") -> str:
    return "/orgs/{org_id}" + path


_PAGE = ("limit",)
_CURSOR = ("after",)
_M = Right  # rows stay on one line each
_O = OrgRight

OPERATIONS: tuple[Operation, ...] = (
    # -- connection (WebSocket only) -----------------------------------------------------------
    Operation(Auth, RateClass.FREE, "Authenticate the connection (first frame).", reply=Welcome),
    Operation(Ping, RateClass.FREE, "Keep the connection alive; answered with pong.", reply=Pong),
    Operation(
        Subscribe, RateClass.QUERY, "Receive a sphere's events live.", _M.READ, reply=Subscribed
    ),
    Operation(Unsubscribe, RateClass.FREE, "Stop receiving a sphere's events.", reply=Unsubscribed),
    Operation(Typing, RateClass.TYPING, "Tell the sphere you are typing.", _M.TYPE, reply=Ok),
    # -- messages --------------------------------------------------------------------------------
    Operation(
        Publish,
        RateClass.POST,
        "Post a message (or a reply, with reply_to).",
        _M.POST,
        when=(("reply_to", _M.REPLY),),
        http=(Http("POST", _s("/messages"), status=201),),
        writes=True,
        reply=Ack,
    ),
    Operation(
        Edit,
        RateClass.POST,
        "Edit one of your posts.",
        _M.EDIT_OWN,
        http=(Http("PUT", _s("/messages/{target}")),),
        writes=True,
        reply=Ack,
    ),
    Operation(
        Delete,
        RateClass.POST,
        "Delete a post: your own, or anyone's as an administrator.",
        _M.DELETE_OWN,
        http=(Http("DELETE", _s("/messages/{target}")),),
        writes=True,
        reply=Ack,
    ),
    Operation(
        History,
        RateClass.QUERY,
        "Read a page of the sphere's history.",
        _M.READ,
        http=(Http("GET", _s("/messages"), query=("before", "after", "limit")),),
        reply=HistoryPage,
    ),
    Operation(
        MarkRead,
        RateClass.READ_MARKER,
        "Move your read marker forward.",
        _M.MARK_READ,
        http=(Http("POST", _s("/read")),),
        reply=Ok,
    ),
    # -- conversations ---------------------------------------------------------------------------
    Operation(
        React,
        RateClass.POST,
        "React to a post with an emoji.",
        _M.REACT,
        http=(Http("POST", _s("/messages/{target}/reactions"), status=201),),
        writes=True,
        reply=Ack,
    ),
    Operation(
        Unreact,
        RateClass.POST,
        "Withdraw your reaction.",
        _M.REACT,
        http=(Http("POST", _s("/messages/{target}/reactions/remove")),),
        writes=True,
        reply=Ack,
    ),
    Operation(
        Pin,
        RateClass.POST,
        "Pin a post.",
        _M.PIN,
        http=(Http("POST", _s("/messages/{target}/pin")),),
        writes=True,
        reply=Ack,
    ),
    Operation(
        Unpin,
        RateClass.POST,
        "Unpin a post.",
        _M.PIN,
        http=(Http("POST", _s("/messages/{target}/unpin")),),
        writes=True,
        reply=Ack,
    ),
    Operation(
        ListPins,
        RateClass.QUERY,
        "The pinned posts.",
        _M.READ,
        http=(Http("GET", _s("/pins")),),
        reply=HistoryPage,
    ),
    Operation(
        GetThread,
        RateClass.QUERY,
        "A post and its replies.",
        _M.READ,
        http=(Http("GET", _s("/messages/{root}/thread"), query=("after", "limit")),),
        reply=ThreadPage,
    ),
    Operation(
        ListThreads,
        RateClass.QUERY,
        "Posts with replies, most recently answered first.",
        _M.READ,
        http=(Http("GET", _s("/threads"), query=_PAGE, text_query=_CURSOR),),
        reply=ThreadList,
    ),
    Operation(
        ListMentions,
        RateClass.QUERY,
        "Posts that mention you, across your spheres.",
        http=(Http("GET", "/mentions", query=_PAGE, text_query=_CURSOR),),
        reply=MentionList,
    ),
    # -- spheres ---------------------------------------------------------------------------------
    Operation(
        ListSpheres,
        RateClass.QUERY,
        "Your spheres (or, with discover, the listed ones).",
        http=(Http("GET", "/spheres", query=("discover", "limit"), text_query=_CURSOR),),
        reply=SphereList,
    ),
    Operation(
        CreateSphere,
        RateClass.SPHERE_ADMIN,
        "Create a sphere; you are its owner.",
        http=(Http("POST", "/spheres", status=201),),
        reply=SphereInfo,
        org_right=_O.CREATE_SPHERE,
    ),
    Operation(
        OpenDirect,
        RateClass.SPHERE_ADMIN,
        "Open a private conversation (the same one again for the same two people).",
        http=(Http("POST", "/direct"),),
        reply=SphereInfo,
    ),
    Operation(
        UpdateSphere,
        RateClass.SPHERE_ADMIN,
        "Change a sphere's name, listing, join policy, retention period, type or history.",
        _M.EDIT_SETTINGS,
        when=(
            ("name", _M.EDIT_SETTINGS),
            ("listed", _M.EDIT_SETTINGS),
            ("join_policy", _M.EDIT_SETTINGS),
            ("privacy", _M.CHANGE_TYPE),
            ("history", _M.CHANGE_HISTORY),
        ),
        http=(Http("PATCH", _s()),),
        reply=SphereInfo,
    ),
    Operation(
        DeleteSphere,
        RateClass.SPHERE_ADMIN,
        "Delete the sphere and all its data.",
        _M.DELETE_SPHERE,
        http=(Http("DELETE", _s()),),
        reply=Ok,
    ),
    Operation(
        SetCharter,
        RateClass.SPHERE_ADMIN,
        "Set or clear the charter.",
        _M.SET_CHARTER,
        http=(Http("PUT", _s("/charter")),),
        reply=CharterInfo,
    ),
    Operation(
        GetCharter,
        RateClass.QUERY,
        "Read the charter.",
        _M.SEE,
        http=(Http("GET", _s("/charter")),),
        reply=CharterInfo,
    ),
    Operation(
        AcceptCharter,
        RateClass.MEMBERSHIP,
        "Accept the charter's current version.",
        _M.ACCEPT_CHARTER,
        http=(Http("POST", _s("/charter/accept")),),
        reply=Ok,
    ),
    Operation(
        ExportSphere,
        RateClass.QUERY,
        "Export the sphere's history within your floor, its members and audit log.",
        _M.EXPORT,
        http=(Http("GET", _s("/export"), stream=True),),
        reply=ExportInfo,
    ),
    Operation(
        ListAudit,
        RateClass.QUERY,
        "The sphere's audit log.",
        _M.READ_AUDIT,
        http=(Http("GET", _s("/audit"), query=("before", "limit")),),
        reply=AuditList,
    ),
    # -- members ---------------------------------------------------------------------------------
    Operation(
        Join,
        RateClass.MEMBERSHIP,
        "Enter a sphere.",
        _M.JOIN,
        http=(Http("POST", _s("/join")),),
        reply=SphereInfo,
    ),
    Operation(
        Leave,
        RateClass.MEMBERSHIP,
        "Leave a sphere.",
        _M.LEAVE,
        http=(Http("POST", _s("/leave")),),
        reply=Ok,
    ),
    Operation(
        ListMembers,
        RateClass.QUERY,
        "The sphere's members.",
        _M.LIST_MEMBERS,
        http=(Http("GET", _s("/members"), query=_PAGE, text_query=_CURSOR),),
        reply=MemberList,
    ),
    Operation(
        AddMember,
        RateClass.MEMBERSHIP,
        "Add a user as a member at once.",
        _M.ADD_MEMBER,
        http=(Http("POST", _s("/members")),),
        reply=Ok,
    ),
    Operation(
        SetRole,
        RateClass.MEMBERSHIP,
        "Change a member's role.",
        _M.SET_ROLE,
        http=(Http("PUT", _s("/members/{user_id}")),),
        reply=Ok,
    ),
    Operation(
        RemoveMember,
        RateClass.MEMBERSHIP,
        "Remove a member.",
        _M.REMOVE_MEMBER,
        http=(Http("DELETE", _s("/members/{user_id}")),),
        reply=Ok,
    ),
    Operation(
        TransferOwnership,
        RateClass.MEMBERSHIP,
        "Make a member the owner; you become an administrator.",
        _M.TRANSFER,
        http=(Http("POST", _s("/transfer")),),
        reply=Ok,
    ),
    Operation(
        Invite,
        RateClass.MEMBERSHIP,
        "Invite a user, with a role no higher than yours.",
        _M.INVITE,
        http=(Http("POST", _s("/invitations"), status=201),),
        reply=InvitationInfo,
    ),
    Operation(
        ListInvitations,
        RateClass.QUERY,
        "Pending invitations: yours, or a sphere's.",
        when=(("sphere_id", _M.LIST_INVITATIONS),),
        http=(
            Http("GET", "/invitations", query=_PAGE, text_query=_CURSOR),
            Http("GET", _s("/invitations"), query=_PAGE, text_query=_CURSOR),
        ),
        reply=InvitationList,
    ),
    Operation(
        RevokeInvitation,
        RateClass.MEMBERSHIP,
        "Revoke an invitation (its inviter or an administrator).",
        http=(Http("DELETE", "/invitations/{invitation_id}"),),
        reply=Ok,
    ),
    Operation(
        AcceptInvitation,
        RateClass.MEMBERSHIP,
        "Accept an invitation made to you.",
        http=(Http("POST", "/invitations/{invitation_id}/accept"),),
        reply=SphereInfo,
    ),
    Operation(
        DeclineInvitation,
        RateClass.MEMBERSHIP,
        "Decline an invitation made to you.",
        http=(Http("POST", "/invitations/{invitation_id}/decline"),),
        reply=Ok,
    ),
    Operation(
        RequestJoin,
        RateClass.MEMBERSHIP,
        "Ask to enter a sphere that needs approval.",
        _M.REQUEST_JOIN,
        http=(Http("POST", _s("/requests"), status=201),),
        reply=Ok,
    ),
    Operation(
        WithdrawRequest,
        RateClass.MEMBERSHIP,
        "Withdraw your join request.",
        _M.REQUEST_JOIN,
        http=(Http("POST", _s("/requests/withdraw")),),
        reply=Ok,
    ),
    Operation(
        ListRequests,
        RateClass.QUERY,
        "Pending join requests.",
        _M.ANSWER_REQUESTS,
        http=(Http("GET", _s("/requests"), query=_PAGE, text_query=_CURSOR),),
        reply=JoinRequestList,
    ),
    Operation(
        AnswerRequest,
        RateClass.MEMBERSHIP,
        "Accept or refuse a join request.",
        _M.ANSWER_REQUESTS,
        http=(Http("POST", _s("/requests/{user_id}")),),
        reply=Ok,
    ),
    # -- moderation ------------------------------------------------------------------------------
    Operation(
        Ban,
        RateClass.MEMBERSHIP,
        "Ban a user: removed, and kept out.",
        _M.BAN,
        http=(Http("PUT", _s("/bans/{user_id}")),),
        reply=Ok,
    ),
    Operation(
        Unban,
        RateClass.MEMBERSHIP,
        "Lift a ban.",
        _M.BAN,
        http=(Http("DELETE", _s("/bans/{user_id}")),),
        reply=Ok,
    ),
    Operation(
        ListBans,
        RateClass.QUERY,
        "Banned users.",
        _M.BAN,
        http=(Http("GET", _s("/bans"), query=_PAGE, text_query=_CURSOR),),
        reply=BanList,
    ),
    Operation(
        Mute,
        RateClass.MEMBERSHIP,
        "Mute a member for a period.",
        _M.MUTE,
        http=(Http("PUT", _s("/mutes/{user_id}")),),
        reply=Ok,
    ),
    Operation(
        Unmute,
        RateClass.MEMBERSHIP,
        "Lift a mute.",
        _M.MUTE,
        http=(Http("DELETE", _s("/mutes/{user_id}")),),
        reply=Ok,
    ),
    Operation(
        Report,
        RateClass.POST,
        "Report a post to the sphere's administrators.",
        _M.REPORT,
        http=(Http("POST", _s("/messages/{target}/reports"), status=201),),
        reply=Ok,
    ),
    Operation(
        ListReports,
        RateClass.QUERY,
        "Reports made in the sphere.",
        _M.READ_REPORTS,
        http=(Http("GET", _s("/reports"), query=("before", "limit")),),
        reply=ReportList,
    ),
    # -- organisations ---------------------------------------------------------------------------
    Operation(
        ListOrgs,
        RateClass.QUERY,
        "Your organisations and your role in each.",
        http=(Http("GET", "/orgs"),),
        reply=OrgList,
    ),
    Operation(
        GetOrg,
        RateClass.QUERY,
        "An organisation: its name, your role, the policies you may see.",
        http=(Http("GET", _o()),),
        reply=OrgInfo,
        org_right=_O.SEE_ORG,
    ),
    Operation(
        UpdateOrg,
        RateClass.SPHERE_ADMIN,
        "Rename the organisation or change its policies (each change audited).",
        http=(Http("PATCH", _o()),),
        reply=OrgInfo,
        org_right=_O.EDIT_POLICIES,
    ),
    Operation(
        ListOrgMembers,
        RateClass.QUERY,
        "The directory of members, by name (query: a name prefix).",
        http=(Http("GET", _o("/members"), query=_PAGE, text_query=("query", "after")),),
        reply=OrgMemberList,
        org_right=_O.LIST_DIRECTORY,
    ),
    Operation(
        AddOrgMember,
        RateClass.MEMBERSHIP,
        "Make a user a member; they join every global sphere.",
        http=(Http("POST", _o("/members")),),
        reply=Ok,
        org_right=_O.MANAGE_MEMBERS,
    ),
    Operation(
        RemoveOrgMember,
        RateClass.MEMBERSHIP,
        "Remove a member: their memberships in the organisation's spheres end first.",
        http=(Http("DELETE", _o("/members/{user_id}")),),
        reply=Ok,
        org_right=_O.MANAGE_MEMBERS,
    ),
    Operation(
        SetOrgRole,
        RateClass.MEMBERSHIP,
        "Make a member a manager, or a manager a member (never the last one).",
        http=(Http("PUT", _o("/members/{user_id}")),),
        reply=Ok,
        org_right=_O.SET_ORG_ROLE,
    ),
    Operation(
        ListOrgAudit,
        RateClass.QUERY,
        "The organisation's audit log.",
        http=(Http("GET", _o("/audit"), query=("before", "limit")),),
        reply=OrgAuditList,
        org_right=_O.READ_ORG_AUDIT,
    ),
    Operation(
        ListOrgSpheres,
        RateClass.QUERY,
        "The portal: the organisation's listed and global spheres (managers: all, by name).",
        http=(Http("GET", _o("/spheres"), query=_PAGE, text_query=_CURSOR),),
        reply=OrgSphereList,
        org_right=_O.LIST_ORG_SPHERES,
    ),
    Operation(
        ManageSphere,
        RateClass.MEMBERSHIP,
        "Become an administrator of a sphere of the organisation, visibly to its members.",
        http=(Http("POST", _o("/spheres/{sphere_id}/manage")),),
        reply=SphereInfo,
        org_right=_O.MANAGE_SPHERES,
    ),
)

WRITES: tuple[type[Frame], ...] = tuple(op.frame for op in OPERATIONS if op.writes)
BY_FRAME: Mapping[type[Frame], Operation] = {op.frame: op for op in OPERATIONS}
# The rate class each client frame spends (a test checks every client frame has a row).
RATE_CLASSES: Mapping[type[Frame], RateClass] = {op.frame: op.rate for op in OPERATIONS}
# Path parameters that are integers (offsets); the rest are strings.
INTEGER_PATH_PARAMS = frozenset({"target", "root"})
