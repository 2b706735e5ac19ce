"""The catalogue of frames: which types a client sends, which the server sends, and ``batch``.

The codec and the session state machine read these tuples; a frame missing here does not exist
on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from protocol.conversations import (
    GetThread,
    ListMentions,
    ListPins,
    ListThreads,
    MentionList,
    Pin,
    React,
    ThreadList,
    ThreadPage,
    Unpin,
    Unreact,
)
from protocol.direct import OpenDirect
from protocol.export import ExportInfo, ExportSphere
from protocol.fields import Frame
from protocol.frames import (
    Ack,
    AddMember,
    Auth,
    CreateSphere,
    Delete,
    Edit,
    ErrorReply,
    History,
    HistoryPage,
    Join,
    Leave,
    ListMembers,
    ListSpheres,
    MarkRead,
    MemberList,
    Ok,
    Ping,
    Pong,
    Presence,
    Publish,
    RemoveMember,
    Replayed,
    SetRole,
    SphereInfo,
    SphereList,
    Subscribe,
    Subscribed,
    Typing,
    Unsubscribe,
    Unsubscribed,
    UpdateSphere,
    UserTyping,
    Welcome,
)
from protocol.governance import (
    AcceptCharter,
    AcceptInvitation,
    AnswerRequest,
    AuditList,
    Ban,
    BanList,
    CharterInfo,
    DeclineInvitation,
    DeleteSphere,
    GetCharter,
    InvitationInfo,
    InvitationList,
    Invite,
    JoinRequestList,
    ListAudit,
    ListBans,
    ListInvitations,
    ListReports,
    ListRequests,
    Mute,
    Report,
    ReportList,
    RequestJoin,
    RevokeInvitation,
    SetCharter,
    TransferOwnership,
    Unban,
    Unmute,
    WithdrawRequest,
)
from protocol.message import Message
from protocol.organisations import (
    AddOrgMember,
    GetOrg,
    ListOrgAudit,
    ListOrgMembers,
    ListOrgs,
    ListOrgSpheres,
    ManageSphere,
    OrgAuditList,
    OrgInfo,
    OrgList,
    OrgMemberList,
    OrgSphereList,
    RemoveOrgMember,
    SetOrgRole,
    UpdateOrg,
)

ClientFrame = (
    Auth
    | Ping
    | Subscribe
    | Unsubscribe
    | Publish
    | Edit
    | Delete
    | History
    | Typing
    | MarkRead
    | ListSpheres
    | CreateSphere
    | UpdateSphere
    | Join
    | Leave
    | AddMember
    | RemoveMember
    | SetRole
    | ListMembers
    | Invite
    | RevokeInvitation
    | AcceptInvitation
    | DeclineInvitation
    | ListInvitations
    | RequestJoin
    | WithdrawRequest
    | AnswerRequest
    | ListRequests
    | Ban
    | Unban
    | ListBans
    | Mute
    | Unmute
    | TransferOwnership
    | DeleteSphere
    | SetCharter
    | GetCharter
    | AcceptCharter
    | ListAudit
    | Report
    | ListReports
    | React
    | Unreact
    | Pin
    | Unpin
    | ListPins
    | GetThread
    | ListThreads
    | ListMentions
    | ExportSphere
    | OpenDirect
    | ListOrgs
    | GetOrg
    | UpdateOrg
    | ListOrgMembers
    | AddOrgMember
    | RemoveOrgMember
    | SetOrgRole
    | ListOrgAudit
    | ListOrgSpheres
    | ManageSphere
)


@dataclass(frozen=True, slots=True)
class Batch(Frame):
    """Several server frames coalesced into one WebSocket message; handle them in order."""

    TYPE: ClassVar[str] = "batch"
    frames: list[ServerFrame]


ServerFrame = (
    Welcome
    | Pong
    | Ok
    | ErrorReply
    | Message
    | Ack
    | Subscribed
    | Replayed
    | Unsubscribed
    | HistoryPage
    | Presence
    | UserTyping
    | SphereInfo
    | SphereList
    | MemberList
    | InvitationInfo
    | InvitationList
    | JoinRequestList
    | BanList
    | CharterInfo
    | AuditList
    | ReportList
    | ThreadPage
    | ThreadList
    | MentionList
    | ExportInfo
    | OrgList
    | OrgInfo
    | OrgMemberList
    | OrgAuditList
    | OrgSphereList
    | Batch
)

CLIENT_FRAMES: tuple[type[Frame], ...] = (
    Auth,
    Ping,
    Subscribe,
    Unsubscribe,
    Publish,
    Edit,
    Delete,
    History,
    Typing,
    MarkRead,
    ListSpheres,
    CreateSphere,
    UpdateSphere,
    Join,
    Leave,
    AddMember,
    RemoveMember,
    SetRole,
    ListMembers,
    Invite,
    RevokeInvitation,
    AcceptInvitation,
    DeclineInvitation,
    ListInvitations,
    RequestJoin,
    WithdrawRequest,
    AnswerRequest,
    ListRequests,
    Ban,
    Unban,
    ListBans,
    Mute,
    Unmute,
    TransferOwnership,
    DeleteSphere,
    SetCharter,
    GetCharter,
    AcceptCharter,
    ListAudit,
    Report,
    ListReports,
    React,
    Unreact,
    Pin,
    Unpin,
    ListPins,
    GetThread,
    ListThreads,
    ListMentions,
    ExportSphere,
    OpenDirect,
    ListOrgs,
    GetOrg,
    UpdateOrg,
    ListOrgMembers,
    AddOrgMember,
    RemoveOrgMember,
    SetOrgRole,
    ListOrgAudit,
    ListOrgSpheres,
    ManageSphere,
)
SERVER_FRAMES: tuple[type[Frame], ...] = (
    Welcome,
    Pong,
    Ok,
    ErrorReply,
    Message,
    Ack,
    Subscribed,
    Replayed,
    Unsubscribed,
    HistoryPage,
    Presence,
    UserTyping,
    SphereInfo,
    SphereList,
    MemberList,
    InvitationInfo,
    InvitationList,
    JoinRequestList,
    BanList,
    CharterInfo,
    AuditList,
    ReportList,
    ThreadPage,
    ThreadList,
    MentionList,
    ExportInfo,
    OrgList,
    OrgInfo,
    OrgMemberList,
    OrgAuditList,
    OrgSphereList,
    Batch,
)
