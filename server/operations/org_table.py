"""The organisation rows of the operation table: each needs an organisation right
(``server.access.org_rights``), checked against the frame's ``org_id`` before its handler."""

from __future__ import annotations

from protocol import (
    AddOrgMember,
    GetOrg,
    ListOrgAudit,
    ListOrgMembers,
    ListOrgs,
    ListOrgSpheres,
    ManageSphere,
    Ok,
    OrgAuditList,
    OrgInfo,
    OrgList,
    OrgMemberList,
    OrgSphereList,
    RemoveOrgMember,
    SetOrgRole,
    SphereInfo,
    UpdateOrg,
)
from server.access.org_rights import OrgRight
from server.operations.row import Http, Operation
from server.ratelimit import RateClass


def _o(path: str = "") -> str:
    return "/orgs/{org_id}" + path


_PAGE = ("limit",)
_CURSOR = ("after",)
_O = OrgRight

ORG_OPERATIONS: tuple[Operation, ...] = (
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
