"""Frames of a sphere's export (``docs/privacy.md``, "Export").

The archive itself travels over HTTP only (``GET /api/v1/spheres/{sphere_id}/export``, a
zip streamed as it is read); over a WebSocket, ``export_sphere`` answers with what that
archive would hold, now.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from protocol.fields import MAX_ID_CHARS, Frame, _ref, _text
from protocol.types import SphereId

# ---------------------------------------------------------------------------------------------
# Client -> server


@dataclass(frozen=True, slots=True)
class ExportSphere(Frame):
    """The sphere's history within the caller's floor, as an archive (its administrators)."""

    TYPE: ClassVar[str] = "export_sphere"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    ref: str | None = _ref()


# ---------------------------------------------------------------------------------------------
# Server -> client


@dataclass(frozen=True, slots=True)
class ExportInfo(Frame):
    """What the sphere's archive holds: its events from offset ``floor`` (the caller's floor of
    the history promise) to ``until`` (the head when asked), its members and audit entries.
    ``truncated_before``: retention removed what lay below this offset and above the floor,
    as a history page says it (absent: nothing was cut)."""

    TYPE: ClassVar[str] = "export_info"
    sphere_id: SphereId
    floor: int
    until: int
    events: int
    members: int
    audit_entries: int
    truncated_before: int | None = None
    ref: str | None = None
