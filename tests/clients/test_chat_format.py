"""How ``cloison chat`` prints the governance and conversation events (no server needed)."""

from __future__ import annotations

import pytest

from clients import _chat_format as fmt
from clients._chat_governance import UsageError, _Settings
from protocol import (
    EventKind,
    HistoryMode,
    JoinPolicy,
    MemberAction,
    Message,
    MessageId,
    Privacy,
    ReactionCount,
    Role,
    SphereId,
    UserId,
)

NAMES = {UserId("u_a"): "alice", UserId("u_b"): "bob"}


def name(user_id: UserId) -> str:
    return NAMES.get(user_id, user_id)


def event(kind: EventKind, **fields: object) -> Message:
    return Message(
        sphere_id=SphereId("s_1"),
        offset=7,
        kind=kind,
        message_id=MessageId("m"),
        author_id=UserId("u_a"),
        ts_ms=0,
        **fields,  # type: ignore[arg-type]
    )


def test_a_reply_names_its_post_and_shows_reactions_and_pin() -> None:
    post = event(
        EventKind.POST,
        body="yes",
        reply_to=3,
        pinned=True,
        reactions=[ReactionCount("👍", 2, [UserId("u_a"), UserId("u_b")])],
    )
    line = fmt.event(post, name)
    assert line.startswith("#7 ")
    assert line.endswith("alice (re #3): yes (pinned) [👍 2]")


@pytest.mark.parametrize(
    ("kind", "fields", "text"),
    [
        (EventKind.REACT, {"target": 3, "emoji": "🎉"}, "* alice reacted 🎉 to #3"),
        (EventKind.UNREACT, {"target": 3, "emoji": "🎉"}, "* alice withdrew 🎉 from #3"),
        (EventKind.PIN, {"target": 3}, "* alice pinned #3"),
        (EventKind.UNPIN, {"target": 3}, "* alice unpinned #3"),
    ],
)
def test_reactions_and_pins_are_notices(
    kind: EventKind, fields: dict[str, object], text: str
) -> None:
    assert fmt.event(event(kind, **fields), name).endswith(text)


@pytest.mark.parametrize(
    ("action", "role", "text"),
    [
        (MemberAction.ACCEPTED, Role.MEMBER, "bob accepted an invitation as member"),
        (MemberAction.ADMITTED, Role.MEMBER, "alice admitted bob"),
        (MemberAction.BANNED, None, "alice banned bob"),
        (MemberAction.UNBANNED, None, "alice lifted the ban on bob"),
        (MemberAction.UNMUTED, Role.MEMBER, "alice unmuted bob"),
    ],
)
def test_membership_actions_in_words(action: MemberAction, role: Role | None, text: str) -> None:
    member = event(
        EventKind.MEMBER, member_id=UserId("u_b"), member_name="bob", role=role, action=action
    )
    assert fmt.event(member, name).endswith(f"* {text}")


def test_a_mute_says_until_when() -> None:
    muted = event(
        EventKind.MEMBER,
        member_id=UserId("u_b"),
        member_name="bob",
        role=Role.MEMBER,
        action=MemberAction.MUTED,
        until_ms=3_600_000,
    )
    assert "alice muted bob until " in fmt.event(muted, name)


def test_a_settings_change_lists_every_setting() -> None:
    change = event(
        EventKind.SPHERE,
        privacy=Privacy.OPEN,
        listed=True,
        join_policy=JoinPolicy.APPROVAL,
        history=HistoryMode.FULL,
        charter_version=2,
    )
    assert fmt.event(change, name).endswith(
        "alice changed the sphere: open, listed, join: approval, history: full, charter v2"
    )


def test_control_characters_from_others_are_stripped() -> None:
    line = fmt.event(event(EventKind.REACT, target=1, emoji="\x1b[31m!"), name)
    assert "\x1b" not in line


def test_settings_words() -> None:
    change = _Settings()
    for key, value in (("type", "open"), ("listed", "yes"), ("join", "free"), ("history", "full")):
        change.set(key, value)
    assert change == _Settings(Privacy.OPEN, True, JoinPolicy.FREE, HistoryMode.FULL)
    with pytest.raises(UsageError):
        change.set("colour", "blue")


def test_mentions_show_as_names_and_are_typed_as_names() -> None:
    post = event(EventKind.POST, body="thanks <@u_b>, and <@u_zz>")
    assert fmt.event(post, name).endswith("alice: thanks @bob, and @u_zz")
    typed = fmt.with_mentions("@Bob look, mail@host and @nobody", NAMES)
    assert typed == "<@u_b> look, mail@host and @nobody"
