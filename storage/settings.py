"""A sphere's settings and what a member's view of it depends on: plain values, shared by
the store's protocols and the server's rules."""

from __future__ import annotations

from dataclasses import dataclass

from protocol import HistoryMode, JoinPolicy, Privacy, Role


@dataclass(frozen=True, slots=True)
class MemberView:
    """What a member's view of a sphere depends on, besides their role."""

    role: Role
    history_from: int  # the first offset they may read (0: the whole history)
    charter_accepted: int  # the charter version they accepted (0: none)
    muted_until_ms: int | None = None


@dataclass(frozen=True, slots=True)
class SphereSettings:
    """Every setting of a sphere but its charter (``create_sphere``, ``update_sphere``)."""

    name: str
    privacy: Privacy
    listed: bool
    join_policy: JoinPolicy
    history: HistoryMode
    retention_days: int | None = None  # None: the server's default period applies


def default_settings(name: str, privacy: Privacy) -> SphereSettings:
    """A new sphere's settings by type: private and restricted spheres are sealed (never
    listed, entered by invitation); open and public ones are listed and free to join. The
    history shows newcomers only what follows their joining."""
    visible = privacy in (Privacy.OPEN, Privacy.PUBLIC)
    return SphereSettings(
        name=name,
        privacy=privacy,
        listed=visible,
        join_policy=JoinPolicy.FREE if visible else JoinPolicy.INVITATION,
        history=HistoryMode.SINCE_JOINING,
    )
