"""Representative frames shared by the protocol tests.

One instance per client and server frame class, with every optional field set (``*_SAMPLES``),
plus the smallest valid instance of each (``*_MINIMAL``); nested value objects (positions,
limits, sphere summaries, members, messages, batches) appear inside them.
"""

from __future__ import annotations

from protocol import (
    Ack,
    AddMember,
    Auth,
    Batch,
    CreateSphere,
    Delete,
    Edit,
    ErrorReply,
    EventKind,
    Frame,
    History,
    HistoryPage,
    Join,
    Leave,
    Limits,
    ListMembers,
    ListSpheres,
    MarkRead,
    MemberAction,
    MemberInfo,
    MemberList,
    Message,
    Ok,
    Ping,
    Pong,
    Presence,
    Privacy,
    Publish,
    RemoveMember,
    Replayed,
    Role,
    ServerFrame,
    SetRole,
    SphereInfo,
    SphereList,
    SphereSummary,
    StreamPosition,
    Subscribe,
    Subscribed,
    Typing,
    Unsubscribe,
    Unsubscribed,
    UpdateSphere,
    UserKind,
    UserTyping,
    Welcome,
)
from protocol.types import ConnId, MessageId, SphereId, UserId

S = SphereId("sph_1")
U = UserId("usr_1")
M = MessageId("msg_1")

CLIENT_SAMPLES: tuple[Frame, ...] = (
    Auth(token="clo_abc_secret", protocol=1, ref="r1"),
    Ping(ref="r2"),
    Subscribe(sphere_id=S, since=StreamPosition(offset=7, epoch="e1"), ref="r3"),
    Unsubscribe(sphere_id=S, ref="r4"),
    Publish(sphere_id=S, message_id=M, body="héllo ✓", ref="r5"),
    Edit(sphere_id=S, message_id=M, target=3, body="fixed", ref="r6"),
    Delete(sphere_id=S, message_id=M, target=3, ref="r7"),
    History(sphere_id=S, before=10, after=0, limit=50, ref="r8"),
    Typing(sphere_id=S, ref="r9"),
    MarkRead(sphere_id=S, offset=9, ref="r10"),
    ListSpheres(discover=True, ref="r11"),
    CreateSphere(name="General", privacy=Privacy.OPEN, ref="r12"),
    UpdateSphere(sphere_id=S, name="Renamed", privacy=Privacy.PUBLIC, ref="r13"),
    Join(sphere_id=S, ref="r14"),
    Leave(sphere_id=S, ref="r15"),
    AddMember(sphere_id=S, user_id=U, role=Role.ADMIN, ref="r16"),
    RemoveMember(sphere_id=S, user_id=U, ref="r17"),
    SetRole(sphere_id=S, user_id=U, role=Role.OWNER, ref="r18"),
    ListMembers(sphere_id=S, ref="r19"),
)

CLIENT_MINIMAL: tuple[Frame, ...] = (
    Auth(token="t", protocol=1),
    Ping(),
    Subscribe(sphere_id=S),
    Unsubscribe(sphere_id=S),
    Publish(sphere_id=S, message_id=M, body="b"),
    Edit(sphere_id=S, message_id=M, target=1, body="b"),
    Delete(sphere_id=S, message_id=M, target=1),
    History(sphere_id=S),
    Typing(sphere_id=S),
    MarkRead(sphere_id=S, offset=0),
    ListSpheres(),
    CreateSphere(name="n"),
    UpdateSphere(sphere_id=S),
    Join(sphere_id=S),
    Leave(sphere_id=S),
    AddMember(sphere_id=S, user_id=U),
    RemoveMember(sphere_id=S, user_id=U),
    SetRole(sphere_id=S, user_id=U),
    ListMembers(sphere_id=S),
)

LIMITS = Limits(
    max_frame_bytes=65536,
    max_message_bytes=16384,
    publish_rate_per_s=2.5,
    publish_burst=60,
    history_limit_max=200,
    idle_timeout_ms=90_000,
)
POST = Message(
    sphere_id=S,
    offset=4,
    kind=EventKind.POST,
    message_id=M,
    author_id=U,
    ts_ms=1_700_000_000_000,
    body="hi",
    edited_ms=1_700_000_000_500,
)
TOMBSTONE = Message(
    sphere_id=S,
    offset=5,
    kind=EventKind.POST,
    message_id=MessageId("msg_2"),
    author_id=U,
    ts_ms=1_700_000_000_001,
    deleted=True,
)
EDIT_EVENT = Message(
    sphere_id=S,
    offset=6,
    kind=EventKind.EDIT,
    message_id=MessageId("msg_3"),
    author_id=U,
    ts_ms=1_700_000_000_002,
    body="new",
    target=4,
)
MEMBER_EVENT = Message(
    sphere_id=S,
    offset=7,
    kind=EventKind.MEMBER,
    message_id=MessageId("m:1"),
    author_id=U,
    ts_ms=1_700_000_000_003,
    member_id=UserId("usr_2"),
    member_name="Bob",
    role=Role.ADMIN,
    action=MemberAction.ROLE_CHANGED,
)
SPHERE_EVENT = Message(
    sphere_id=S,
    offset=8,
    kind=EventKind.SPHERE,
    message_id=MessageId("m:2"),
    author_id=U,
    ts_ms=1_700_000_000_004,
    privacy=Privacy.OPEN,
)
MEMBER_SUMMARY = SphereSummary(
    sphere_id=S,
    name="General",
    privacy=Privacy.PRIVATE,
    epoch="e1",
    offset=6,
    role=Role.MEMBER,
    read_offset=4,
    unread=2,
)
OUTSIDER_SUMMARY = SphereSummary(
    sphere_id=SphereId("sph_2"), name="Lobby", privacy=Privacy.PUBLIC, epoch="e2", offset=0
)

_SERVER_LEAVES: tuple[ServerFrame, ...] = (
    Welcome(
        user_id=U,
        name="Ada",
        conn_id=ConnId("c1"),
        protocol=1,
        server_time_ms=1_700_000_000_000,
        limits=LIMITS,
        ref="r1",
    ),
    Pong(server_time_ms=1_700_000_000_000, ref="r2"),
    Ok(ref="r3"),
    ErrorReply(
        code="rate_limited", message="too many writes", retryable=True, ref="r4", retry_after_ms=50
    ),
    POST,
    Ack(sphere_id=S, message_id=M, offset=4, ts_ms=1_700_000_000_000, duplicate=True, ref="r5"),
    Subscribed(sphere_id=S, position=StreamPosition(offset=6, epoch="e1"), online=[U], ref="r6"),
    Replayed(sphere_id=S, position=StreamPosition(offset=8, epoch="e1"), ref="r6b"),
    Unsubscribed(sphere_id=S, reason="removed", ref="r7"),
    HistoryPage(
        sphere_id=S,
        messages=[POST, TOMBSTONE, EDIT_EVENT, MEMBER_EVENT, SPHERE_EVENT],
        has_more=True,
        ref="r8",
    ),
    Presence(sphere_id=S, user_id=U, online=True),
    UserTyping(sphere_id=S, user_id=U),
    SphereInfo(sphere=MEMBER_SUMMARY, ref="r9"),
    SphereList(spheres=[MEMBER_SUMMARY, OUTSIDER_SUMMARY], ref="r10"),
    MemberList(
        sphere_id=S,
        members=[
            MemberInfo(user_id=U, name="Ada", kind=UserKind.HUMAN, role=Role.OWNER),
            MemberInfo(user_id=UserId("bot_1"), name="Bot", kind=UserKind.BOT, role=Role.MEMBER),
        ],
        ref="r11",
    ),
)

SERVER_SAMPLES: tuple[Frame, ...] = (
    *_SERVER_LEAVES,
    Batch(frames=[*_SERVER_LEAVES, Ok(), POST]),
)

SERVER_MINIMAL: tuple[Frame, ...] = (
    Welcome(user_id=U, name="n", conn_id=ConnId("c"), protocol=1, server_time_ms=0, limits=LIMITS),
    Pong(server_time_ms=0),
    Ok(),
    ErrorReply(code="internal", message="internal error", retryable=True),
    Message(
        sphere_id=S, offset=1, kind=EventKind.DELETE, message_id=M, author_id=U, ts_ms=0, target=1
    ),
    Ack(sphere_id=S, message_id=M, offset=1, ts_ms=0),
    Subscribed(sphere_id=S, position=StreamPosition(offset=0, epoch="e"), online=[]),
    Replayed(sphere_id=S, position=StreamPosition(offset=0, epoch="e")),
    Unsubscribed(sphere_id=S, reason="requested"),
    HistoryPage(sphere_id=S, messages=[], has_more=False),
    Presence(sphere_id=S, user_id=U, online=False),
    UserTyping(sphere_id=S, user_id=U),
    SphereInfo(sphere=OUTSIDER_SUMMARY),
    SphereList(spheres=[]),
    MemberList(sphere_id=S, members=[]),
    Batch(frames=[]),
)
