"""The only place that answers "may they?".

- ``rights``: the rights table (standing x right x sphere type), from which everything else is
  derived;
- ``rules``: the checks built on it — visibility (``not_found`` alike for hidden and missing
  spheres), ``require``, and the membership decisions made inside store transactions;
- ``guard``: ``authorise``, the check the dispatcher runs before every sphere request.
"""

from server.access.guard import CHARTER_REQUIRED, CurrentAccess, Granted, MapAccess, authorise
from server.access.rights import RIGHTS, Grant, Right, Standing, allowed, standing_allows
from server.access.rules import (
    JOIN_TO_READ,
    MEMBERS_ONLY,
    SPHERE_NOT_FOUND,
    can_manage,
    can_read,
    check_charter,
    check_retention,
    create_settings,
    decide_join,
    decide_leave,
    decide_remove,
    deciding_add,
    deciding_role,
    deciding_settings,
    history_floor,
    refused_write,
    require,
    require_member,
    require_no_hold,
    require_right,
    require_visible,
    require_visible_privacy,
    resolve,
    sees_members,
    unfit_setting,
    visible,
)

__all__ = [
    "CHARTER_REQUIRED",
    "JOIN_TO_READ",
    "MEMBERS_ONLY",
    "RIGHTS",
    "SPHERE_NOT_FOUND",
    "CurrentAccess",
    "Grant",
    "Granted",
    "MapAccess",
    "Right",
    "Standing",
    "allowed",
    "authorise",
    "can_manage",
    "can_read",
    "check_charter",
    "check_retention",
    "create_settings",
    "decide_join",
    "decide_leave",
    "decide_remove",
    "deciding_add",
    "deciding_role",
    "deciding_settings",
    "history_floor",
    "refused_write",
    "require",
    "require_member",
    "require_no_hold",
    "require_right",
    "require_visible",
    "require_visible_privacy",
    "resolve",
    "sees_members",
    "standing_allows",
    "unfit_setting",
    "visible",
]
