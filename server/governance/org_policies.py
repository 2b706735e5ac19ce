"""An organisation's policies on the wire: what each caller may see of them (``org_info``),
and a change as the store validates it (``update_org``)."""

from __future__ import annotations

import dataclasses
from typing import Any

from protocol import OrgPolicySet, OrgQuotaSet
from server.config import Config
from storage import OrgPolicies

# The policies every member sees: they decide what members may do and what becomes of what
# they write. The quotas and the self-registration domains are the managers' business.
MEMBER_POLICIES = frozenset(
    {
        "retention_days",
        "history",
        "member_sphere_types",
        "visitors",
        "member_exports",
        "erasure",
        "directory",
        "export_private_messages",
    }
)


def policy_view(policies: OrgPolicies, config: Config, *, manager: bool) -> OrgPolicySet:
    """The policies as the caller may see them; a policy left to the server says the server's."""
    quotas = policies.quotas
    view = OrgPolicySet(
        retention_days=policies.retention_days or 0,
        history=policies.history,
        member_sphere_types=list(policies.member_sphere_types),
        visitors=policies.visitors,
        member_exports=(
            config.member_exports if policies.member_exports is None else policies.member_exports
        ),
        erasure=(policies.erasure.value if policies.erasure else config.account_deletion),
        directory=policies.directory,
        email_domains=list(policies.email_domains),
        export_private_messages=policies.export_private_messages,
        quotas=OrgQuotaSet(
            members=quotas.members or 0,
            spheres=quotas.spheres or 0,
            messages_per_day=quotas.messages_per_day or 0,
            storage_bytes=quotas.storage_bytes or 0,
        ),
    )
    if manager:
        return view
    hidden = {f.name: None for f in dataclasses.fields(view) if f.name not in MEMBER_POLICIES}
    return dataclasses.replace(view, **hidden)


def raw_policies(patch: OrgPolicySet) -> dict[str, Any]:
    """The policies an ``update_org`` names, as ``storage.policies_from`` reads them (0: the
    server's default, or no limit)."""
    raw: dict[str, Any] = {}
    for f in dataclasses.fields(patch):
        value = getattr(patch, f.name)
        if value is None:
            continue
        if f.name == "retention_days":
            value = value or None
        elif f.name == "member_sphere_types":
            value = [t.value for t in value]
        elif f.name == "quotas":
            value = {
                q.name: getattr(value, q.name) or None
                for q in dataclasses.fields(value)
                if getattr(value, q.name) is not None
            }
        raw[f.name] = value
    return raw
