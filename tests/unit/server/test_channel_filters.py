"""What each subscriber of a channel is sent: ``server.channel`` applied to delivered events."""

from __future__ import annotations

from protocol import (
    ConnId,
    EventKind,
    HistoryMode,
    JsonCodec,
    MemberAction,
    Message,
    MessageId,
    Privacy,
    Role,
    SphereId,
    UserId,
    Wire,
)
from server.channel import CHARTER, REVOKED, SphereChannel, Subscription, apply, ends, withheld
from server.connection import Connection, Flusher

SPHERE = SphereId("s_1")


class SilentTransport:
    """A socket that takes everything: these tests never send."""

    def send_now(self, wire: Wire) -> bool:
        return True

    async def send(self, wire: Wire) -> None:
        return None

    async def close(self, code: int, reason: str) -> None:
        return None

    def abort(self) -> None:
        return None


def subscription(user: str, role: Role | None, *, floor: int = 0) -> Subscription:
    conn = Connection(
        ConnId(f"c-{user}"),
        UserId(user),
        JsonCodec(),
        SilentTransport(),
        queue_max_bytes=1 << 20,
        send_timeout_s=1.0,
        flusher=Flusher(),
    )
    sub = Subscription(conn, SPHERE, role, floor=floor)
    sub.live = True
    return sub


def event(offset: int, kind: EventKind, **fields: object) -> Message:
    return Message(
        sphere_id=SPHERE,
        offset=offset,
        kind=kind,
        message_id=MessageId(f"m{offset}"),
        author_id=UserId(str(fields.pop("author", "alice"))),
        ts_ms=0,
        **fields,  # type: ignore[arg-type]
    )


def channel(*subs: Subscription, privacy: Privacy = Privacy.PRIVATE) -> SphereChannel:
    made = SphereChannel(SPHERE, "e1", privacy, delivered=10)
    for sub in subs:
        made.subs[sub.conn.conn_id] = sub
        if sub.role is not None:
            made.members[sub.conn.user_id] = sub.role
            made.floors[sub.conn.user_id] = sub.floor
    return made


async def test_changes_of_posts_below_the_floor_are_withheld() -> None:
    newcomer = subscription("bob", Role.MEMBER, floor=5)
    for kind in (EventKind.EDIT, EventKind.DELETE, EventKind.REACT, EventKind.PIN):
        assert withheld(newcomer, event(11, kind, target=4), Privacy.PRIVATE)
        assert not withheld(newcomer, event(11, kind, target=5), Privacy.PRIVATE)
    reply = event(11, EventKind.POST, body="re", reply_to=4)
    assert not withheld(newcomer, reply, Privacy.PRIVATE)  # posted after the joining


async def test_member_events_of_others_are_withheld_from_who_may_not_list_members() -> None:
    carol_joined = event(11, EventKind.MEMBER, member_id="carol", role=Role.MEMBER)
    assert not withheld(subscription("bob", Role.MEMBER), carol_joined, Privacy.PRIVATE)
    assert withheld(subscription("bob", Role.VISITOR), carol_joined, Privacy.PRIVATE)
    assert withheld(subscription("bob", Role.MEMBER), carol_joined, Privacy.RESTRICTED)
    assert not withheld(subscription("bob", Role.PUBLISHER), carol_joined, Privacy.RESTRICTED)
    assert withheld(subscription("bob", None), carol_joined, Privacy.PUBLIC)
    own = event(11, EventKind.MEMBER, member_id="bob", role=Role.MEMBER)
    assert not withheld(subscription("bob", Role.VISITOR), own, Privacy.PRIVATE)


async def test_joining_sets_the_floor_by_the_history_mode() -> None:
    for history, floor in ((HistoryMode.SINCE_JOINING, 11), (HistoryMode.FULL, 0)):
        reader = subscription("bob", None)
        made = channel(reader, privacy=Privacy.PUBLIC)
        made.history, made.public_from = history, 0
        joined = event(11, EventKind.MEMBER, member_id="bob", role=Role.MEMBER)
        assert apply(made, joined) == []
        assert made.floors[UserId("bob")] == floor
        assert (reader.role, reader.floor) == (Role.MEMBER, 0)  # public: what outsiders read


async def test_a_sphere_made_public_shows_outsiders_only_what_follows() -> None:
    member = subscription("bob", Role.MEMBER, floor=3)
    made = channel(member)
    public = event(11, EventKind.SPHERE, privacy=Privacy.PUBLIC, history=HistoryMode.SINCE_JOINING)
    assert apply(made, public) == []
    assert (made.public_from, member.floor) == (11, 3)
    sealed = event(12, EventKind.SPHERE, privacy=Privacy.PRIVATE, history=HistoryMode.SINCE_JOINING)
    outsider = subscription("eve", None, floor=11)
    made.subs[outsider.conn.conn_id] = outsider
    assert apply(made, sealed) == [(outsider, REVOKED)]


async def test_a_new_charter_ends_who_has_not_accepted_it() -> None:
    setter, member = subscription("alice", Role.PUBLISHER), subscription("bob", Role.MEMBER)
    reader = subscription("eve", None)
    made = channel(setter, member, reader, privacy=Privacy.PUBLIC)
    charter = event(11, EventKind.SPHERE, privacy=Privacy.PUBLIC, charter_version=1)
    assert ends(member, charter) == CHARTER
    assert apply(made, charter) == [(member, CHARTER)]
    assert setter.charter_accepted == 1
    assert ends(reader, charter) is None  # outsiders are asked nothing
    # An outside reader who joins while subscribed accepts it first.
    joined = event(
        12, EventKind.MEMBER, member_id="eve", role=Role.MEMBER, action=MemberAction.JOINED
    )
    assert apply(made, joined) == [(reader, CHARTER)]
