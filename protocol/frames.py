"""Every frame of the wire protocol, one frozen dataclass per ``type``.

A frame on the wire is a map with a ``type`` key naming the frame and one key per field.
Optional fields whose value is ``None`` are left out when encoding; on decoding, a missing
optional field and an explicit ``null`` both mean ``None``. Field constraints (string
lengths, integer ranges) live in each field's metadata and are checked by the codec, so a
frame built from the wire is always valid.

Client frames that expect an answer carry ``ref``, a client-chosen string the server echoes
in the reply (``ack``, ``ok``, ``error``, ...), so a client can pipeline requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from protocol.fields import (
    MAX_CURSOR_CHARS,
    MAX_HISTORY_LIMIT,
    MAX_ID_CHARS,
    MAX_LIST_LIMIT,
    MAX_NAME_CHARS,
    MAX_OFFSET,
    MAX_REF_CHARS,
    MAX_RETENTION_DAYS,
    MAX_TOKEN_CHARS,
    PROTOCOL_VERSION,
    Frame,
    _body,
    _int,
    _opt_int,
    _opt_text,
    _ref,
    _text,
)
from protocol.message import LegalHold, Message, ReactionCount
from protocol.types import (
    ConnId,
    HistoryMode,
    JoinPolicy,
    MessageId,
    OrgId,
    Privacy,
    Role,
    SphereId,
    StreamPosition,
    UserId,
    UserKind,
)

__all__ = [
    "MAX_CURSOR_CHARS",
    "MAX_HISTORY_LIMIT",
    "MAX_ID_CHARS",
    "MAX_LIST_LIMIT",
    "MAX_NAME_CHARS",
    "MAX_OFFSET",
    "MAX_REF_CHARS",
    "MAX_RETENTION_DAYS",
    "MAX_TOKEN_CHARS",
    "PROTOCOL_VERSION",
    "Frame",
    "LegalHold",
    "Message",
    "ReactionCount",
]


# ---------------------------------------------------------------------------------------------
# Client -> server


@dataclass(frozen=True, slots=True)
class Auth(Frame):
    """First frame of every connection: the bearer token of a user or bot."""

    TYPE: ClassVar[str] = "auth"
    token: str = _text(MAX_TOKEN_CHARS)
    protocol: int = _int(1, 1_000)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class Ping(Frame):
    TYPE: ClassVar[str] = "ping"
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class Subscribe(Frame):
    """Start receiving a sphere's events; with ``since``, first replay what came after it."""

    TYPE: ClassVar[str] = "subscribe"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    since: StreamPosition | None = None
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class Unsubscribe(Frame):
    TYPE: ClassVar[str] = "unsubscribe"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class Publish(Frame):
    TYPE: ClassVar[str] = "publish"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    message_id: MessageId = _text(MAX_ID_CHARS)
    body: str = _body()
    reply_to: int | None = _opt_int(1, MAX_OFFSET)  # the offset of the post it answers
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class Edit(Frame):
    TYPE: ClassVar[str] = "edit"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    message_id: MessageId = _text(MAX_ID_CHARS)
    target: int = _int(1, MAX_OFFSET)
    body: str = _body()
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class Delete(Frame):
    TYPE: ClassVar[str] = "delete"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    message_id: MessageId = _text(MAX_ID_CHARS)
    target: int = _int(1, MAX_OFFSET)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class History(Frame):
    """Read posts in their current state: the newest below ``before``, or the oldest after
    ``after``; a page is always in ascending offset order."""

    TYPE: ClassVar[str] = "history"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    before: int | None = _opt_int(1, MAX_OFFSET)
    after: int | None = _opt_int(0, MAX_OFFSET)
    limit: int | None = _opt_int(1, MAX_HISTORY_LIMIT)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class Typing(Frame):
    TYPE: ClassVar[str] = "typing"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class MarkRead(Frame):
    TYPE: ClassVar[str] = "mark_read"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    offset: int = _int(0, MAX_OFFSET)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class ListSpheres(Frame):
    """The caller's spheres with unread counts (``discover``: open and public spheres)."""

    TYPE: ClassVar[str] = "list_spheres"
    discover: bool = False
    limit: int | None = _opt_int(1, MAX_LIST_LIMIT)
    after: str | None = _opt_text(MAX_CURSOR_CHARS)  # ``next`` of the previous page
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class CreateSphere(Frame):
    """A new sphere whose creator is its owner. ``listed`` and ``join_policy`` default by type
    (``docs/governance.md``); ``history`` defaults to ``since_joining``."""

    TYPE: ClassVar[str] = "create_sphere"
    name: str = _text(MAX_NAME_CHARS)
    privacy: Privacy = Privacy.PRIVATE
    listed: bool | None = None
    join_policy: JoinPolicy | None = None
    history: HistoryMode | None = None
    # The organisation the sphere belongs to; absent: the caller's only organisation.
    org_id: OrgId | None = _opt_text(MAX_ID_CHARS)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class UpdateSphere(Frame):
    TYPE: ClassVar[str] = "update_sphere"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    name: str | None = _opt_text(MAX_NAME_CHARS)
    privacy: Privacy | None = None
    listed: bool | None = None
    join_policy: JoinPolicy | None = None
    history: HistoryMode | None = None  # free while the creator is alone; then only narrowed
    # Days a message is kept (at most the server's own period, if it sets one); 0: back to the
    # server's default.
    retention_days: int | None = _opt_int(0, MAX_RETENTION_DAYS)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class Join(Frame):
    TYPE: ClassVar[str] = "join"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class Leave(Frame):
    TYPE: ClassVar[str] = "leave"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class AddMember(Frame):
    """Invite a user into a sphere (admins and owners); grants membership at once."""

    TYPE: ClassVar[str] = "add_member"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    user_id: UserId = _text(MAX_ID_CHARS)
    role: Role = Role.MEMBER
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class RemoveMember(Frame):
    TYPE: ClassVar[str] = "remove_member"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    user_id: UserId = _text(MAX_ID_CHARS)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class SetRole(Frame):
    TYPE: ClassVar[str] = "set_role"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    user_id: UserId = _text(MAX_ID_CHARS)
    role: Role = Role.MEMBER
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class ListMembers(Frame):
    TYPE: ClassVar[str] = "list_members"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    limit: int | None = _opt_int(1, MAX_LIST_LIMIT)
    after: str | None = _opt_text(MAX_CURSOR_CHARS)  # ``next`` of the previous page
    ref: str | None = _ref()


# ---------------------------------------------------------------------------------------------
# Value objects nested in server frames


@dataclass(frozen=True, slots=True)
class Limits:
    """The server's limits, announced in ``welcome`` so clients can stay inside them."""

    max_frame_bytes: int
    max_message_bytes: int
    publish_rate_per_s: float
    publish_burst: int
    history_limit_max: int
    idle_timeout_ms: int  # send any frame (``ping`` will do) at least this often


@dataclass(frozen=True, slots=True)
class SphereSummary:
    sphere_id: SphereId
    name: str
    privacy: Privacy
    epoch: str
    offset: int  # the sphere's latest event offset
    role: Role | None = None  # the caller's role; None when not a member
    read_offset: int | None = None  # the caller's read marker (members only)
    unread: int | None = None  # posts after the read marker (members only)
    listed: bool = False
    join_policy: JoinPolicy = JoinPolicy.INVITATION
    history: HistoryMode = HistoryMode.SINCE_JOINING
    charter_version: int = 0  # 0: no charter
    # The caller's view (members only): the first offset they may read, the charter version
    # they accepted, and until when they are muted.
    history_from: int | None = None
    charter_accepted: int | None = None
    muted_until_ms: int | None = None
    # Retention: the sphere's own period in days (None: the server's default applies), the
    # horizon (the first offset the stream still holds; 0: nothing was removed), and the legal
    # hold that suspends retention and deletion, if one is set.
    retention_days: int | None = None
    retained_from: int = 0
    legal_hold: LegalHold | None = None
    # A direct conversation's other participants, for a participant's lists; absent otherwise.
    participants: list[MemberInfo] | None = None


@dataclass(frozen=True, slots=True)
class MemberInfo:
    user_id: UserId
    name: str
    kind: UserKind
    role: Role


# ---------------------------------------------------------------------------------------------
# Server -> client


@dataclass(frozen=True, slots=True)
class Welcome(Frame):
    TYPE: ClassVar[str] = "welcome"
    user_id: UserId
    name: str
    conn_id: ConnId
    protocol: int
    server_time_ms: int
    limits: Limits
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Pong(Frame):
    TYPE: ClassVar[str] = "pong"
    server_time_ms: int
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Ok(Frame):
    TYPE: ClassVar[str] = "ok"
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class ErrorReply(Frame):
    TYPE: ClassVar[str] = "error"
    code: str
    message: str
    retryable: bool
    ref: str | None = None
    retry_after_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Ack(Frame):
    """A write is durable: ``offset`` is its place in the sphere's stream."""

    TYPE: ClassVar[str] = "ack"
    sphere_id: SphereId
    message_id: MessageId
    offset: int
    ts_ms: int
    duplicate: bool = False
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Subscribed(Frame):
    """Subscription is live. Replayed events (if ``since`` was given) up to ``position`` follow."""

    TYPE: ClassVar[str] = "subscribed"
    sphere_id: SphereId
    position: StreamPosition
    online: list[UserId]
    # Set when ``since`` lay below the sphere's retention horizon: the events before this
    # offset are gone for good, and the replay starts at it.
    truncated_before: int | None = None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Replayed(Frame):
    """The replay a ``subscribe`` with ``since`` asked for is over: the subscription is live.

    Every event up to ``position`` has been sent; what follows arrives live, in order.
    """

    TYPE: ClassVar[str] = "replayed"
    sphere_id: SphereId
    position: StreamPosition
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Unsubscribed(Frame):
    """Subscription ended: on request, or because the user lost access (``reason``)."""

    TYPE: ClassVar[str] = "unsubscribed"
    sphere_id: SphereId
    reason: str
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class HistoryPage(Frame):
    TYPE: ClassVar[str] = "history_page"
    sphere_id: SphereId
    messages: list[Message]  # ascending by offset
    has_more: bool
    # Set when the page reaches below the sphere's retention horizon: the events before this
    # offset, which the reader could have read, were removed by retention.
    truncated_before: int | None = None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Presence(Frame):
    TYPE: ClassVar[str] = "presence"
    sphere_id: SphereId
    user_id: UserId
    online: bool


@dataclass(frozen=True, slots=True)
class UserTyping(Frame):
    TYPE: ClassVar[str] = "user_typing"
    sphere_id: SphereId
    user_id: UserId


@dataclass(frozen=True, slots=True)
class SphereInfo(Frame):
    TYPE: ClassVar[str] = "sphere_info"
    sphere: SphereSummary
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class SphereList(Frame):
    TYPE: ClassVar[str] = "sphere_list"
    spheres: list[SphereSummary]
    next: str | None = None  # more follow: pass as ``after``; absent on the last page
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class MemberList(Frame):
    TYPE: ClassVar[str] = "member_list"
    sphere_id: SphereId
    members: list[MemberInfo]
    next: str | None = None  # more follow: pass as ``after``; absent on the last page
    ref: str | None = None
