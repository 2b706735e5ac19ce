"""The rights table: which standing in a sphere holds which right, in each type of sphere.

This table is the only statement of who may do what. The operation table
(``server.operations.table``) names the right each request needs, the dispatcher checks it
before any handler runs, the membership decisions made inside store transactions
(``server.access.rules``) consult it, ``docs/governance.md`` prints it and the permission-matrix
test is generated from it. Rules about a particular object (only the author edits a post; an
invitation carries a role no higher than the inviter's; administrators act only on members of a
lower role) are checked beside it by the handlers, on top of the right.

A *standing* is what a user is in one sphere: a member with a role, a muted member (their role's
rights minus those that speak), an outsider (not a member), or banned (an outsider who holds no
right at all). Visibility is a right like the others (``see``): an outsider of a private or
restricted sphere does not see it, and is answered ``not_found`` exactly as for a sphere that
does not exist.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from protocol import Privacy, Role


class Right(StrEnum):
    SEE = "see"  # learn that the sphere exists, its name and type
    READ = "read"  # subscribe, history, threads, pins, mentions in it
    POST = "post"
    REPLY = "reply"  # a post that answers another
    REACT = "react"
    EDIT_OWN = "edit_own"  # edit one's own posts
    DELETE_OWN = "delete_own"  # delete one's own posts
    DELETE_ANY = "delete_any"  # delete anyone's post (a moderation act, audited)
    PIN = "pin"
    TYPE = "type"  # send typing notices
    MARK_READ = "mark_read"
    LIST_MEMBERS = "list_members"
    JOIN = "join"  # enter at once (join policy ``free``)
    REQUEST_JOIN = "request_join"  # ask to enter (join policy ``approval``)
    LEAVE = "leave"
    INVITE = "invite"  # with a role no higher than one's own
    ADD_MEMBER = "add_member"
    REMOVE_MEMBER = "remove_member"
    SET_ROLE = "set_role"
    BAN = "ban"
    MUTE = "mute"
    ANSWER_REQUESTS = "answer_requests"  # list, accept and refuse join requests
    LIST_INVITATIONS = "list_invitations"  # every pending invitation of the sphere
    EDIT_SETTINGS = "edit_settings"  # name, listed, join policy
    CHANGE_TYPE = "change_type"
    CHANGE_HISTORY = "change_history"
    SET_CHARTER = "set_charter"
    ACCEPT_CHARTER = "accept_charter"
    READ_AUDIT = "read_audit"
    REPORT = "report"
    READ_REPORTS = "read_reports"
    TRANSFER = "transfer"  # hand ownership to another member
    DELETE_SPHERE = "delete_sphere"
    EXPORT = "export"  # the sphere's history, within one's own floor, as an archive


class Standing(StrEnum):
    """What a user is in one sphere, as the permission matrix enumerates it."""

    OWNER = "owner"
    ADMIN = "admin"
    PUBLISHER = "publisher"
    MEMBER = "member"
    VISITOR = "visitor"
    MUTED = "muted"  # a member (role ``member``) under a mute
    OUTSIDER = "outsider"  # not a member: never was, left, or was removed
    BANNED = "banned"


ROLES = frozenset(Role)
STAFF = frozenset({Role.OWNER, Role.ADMIN})
PUBLISHERS = STAFF | {Role.PUBLISHER}
# Members proper: every role but visitor.
MEMBERS = ROLES - {Role.VISITOR}
OWNER = frozenset({Role.OWNER})
NOBODY: frozenset[Role] = frozenset()
# The types an outsider can see (private, restricted, global and direct spheres are sealed).
VISIBLE_TYPES = frozenset({Privacy.OPEN, Privacy.PUBLIC})


@dataclass(frozen=True, slots=True)
class Grant:
    """Who holds a right: the member ``roles`` (in every type unless ``by_type`` says
    otherwise), and outsiders in the ``outsiders`` types."""

    roles: frozenset[Role]
    by_type: Mapping[Privacy, frozenset[Role]] = field(default_factory=dict)
    outsiders: frozenset[Privacy] = frozenset()
    speaks: bool = False  # lost while muted

    def roles_in(self, privacy: Privacy) -> frozenset[Role]:
        return self.by_type.get(privacy, self.roles)


RIGHTS: Mapping[Right, Grant] = {
    Right.SEE: Grant(ROLES, outsiders=VISIBLE_TYPES),
    Right.READ: Grant(ROLES, outsiders=frozenset({Privacy.PUBLIC})),
    Right.POST: Grant(ROLES, by_type={Privacy.RESTRICTED: PUBLISHERS}, speaks=True),
    Right.REPLY: Grant(ROLES, speaks=True),
    Right.REACT: Grant(ROLES, speaks=True),
    Right.EDIT_OWN: Grant(ROLES, speaks=True),
    Right.DELETE_OWN: Grant(ROLES),
    Right.DELETE_ANY: Grant(STAFF),
    Right.PIN: Grant(PUBLISHERS),
    Right.TYPE: Grant(ROLES, speaks=True),
    Right.MARK_READ: Grant(ROLES),
    Right.LIST_MEMBERS: Grant(MEMBERS, by_type={Privacy.RESTRICTED: PUBLISHERS}),
    Right.JOIN: Grant(ROLES, outsiders=VISIBLE_TYPES),  # a member joining again: no change
    Right.REQUEST_JOIN: Grant(ROLES, outsiders=VISIBLE_TYPES),  # a member: nothing to ask
    # A global sphere's members are the organisation's: they leave it by leaving the organisation.
    Right.LEAVE: Grant(ROLES, by_type={Privacy.GLOBAL: NOBODY}),
    Right.INVITE: Grant(MEMBERS, by_type={Privacy.RESTRICTED: PUBLISHERS}),
    Right.ADD_MEMBER: Grant(STAFF),
    Right.REMOVE_MEMBER: Grant(STAFF),
    Right.SET_ROLE: Grant(STAFF),
    Right.BAN: Grant(STAFF),
    Right.MUTE: Grant(STAFF),
    Right.ANSWER_REQUESTS: Grant(STAFF),
    Right.LIST_INVITATIONS: Grant(STAFF),
    Right.EDIT_SETTINGS: Grant(STAFF),
    Right.CHANGE_TYPE: Grant(OWNER),
    Right.CHANGE_HISTORY: Grant(OWNER),
    Right.SET_CHARTER: Grant(PUBLISHERS),
    Right.ACCEPT_CHARTER: Grant(ROLES),
    Right.READ_AUDIT: Grant(STAFF),
    Right.REPORT: Grant(ROLES),
    Right.READ_REPORTS: Grant(STAFF),
    Right.TRANSFER: Grant(OWNER),
    Right.DELETE_SPHERE: Grant(OWNER),
    Right.EXPORT: Grant(STAFF),
}

# A direct conversation (private messages) is administered by nobody and seen by nobody else:
# its participants (all role ``member``) hold what members hold, pins included, and nobody
# holds a right that governs a sphere or shows it to another. This is the table's ``direct``
# column for the rows it names; the others grant in it as their ``roles`` say.
PARTICIPANTS = frozenset({Role.MEMBER})
DIRECT_ROLES: Mapping[Right, frozenset[Role]] = {
    Right.PIN: PARTICIPANTS,
    **dict.fromkeys(
        (
            Right.DELETE_ANY,
            Right.INVITE,
            Right.ADD_MEMBER,
            Right.REMOVE_MEMBER,
            Right.SET_ROLE,
            Right.BAN,
            Right.MUTE,
            Right.ANSWER_REQUESTS,
            Right.LIST_INVITATIONS,
            Right.EDIT_SETTINGS,
            Right.CHANGE_TYPE,
            Right.CHANGE_HISTORY,
            Right.SET_CHARTER,
            Right.READ_AUDIT,
            Right.REPORT,
            Right.READ_REPORTS,
            Right.TRANSFER,
            Right.DELETE_SPHERE,
            Right.EXPORT,
        ),
        NOBODY,
    ),
}
RIGHTS = {
    right: dataclasses.replace(
        grant, by_type={**grant.by_type, Privacy.DIRECT: DIRECT_ROLES[right]}
    )
    if right in DIRECT_ROLES
    else grant
    for right, grant in RIGHTS.items()
}


def allowed(
    right: Right,
    privacy: Privacy,
    role: Role | None,
    *,
    muted: bool = False,
    banned: bool = False,
) -> bool:
    """Does a user with ``role`` (None: an outsider) hold ``right`` in a sphere of ``privacy``?"""
    grant = RIGHTS[right]
    if role is None:
        # A banned user still sees a visible sphere (and is told they are banned), nothing more.
        return privacy in grant.outsiders and (not banned or right is Right.SEE)
    if muted and grant.speaks:
        return False
    return role in grant.roles_in(privacy)


def standing_allows(right: Right, privacy: Privacy, standing: Standing) -> bool:
    """``allowed`` for one row of the permission matrix."""
    if standing is Standing.OUTSIDER:
        return allowed(right, privacy, None)
    if standing is Standing.BANNED:
        return allowed(right, privacy, None, banned=True)
    if standing is Standing.MUTED:
        return allowed(right, privacy, Role.MEMBER, muted=True)
    return allowed(right, privacy, Role(standing.value))
