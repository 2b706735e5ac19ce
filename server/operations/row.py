"""One row of the operation table (``server.operations.table``) and its HTTP routes."""

from __future__ import annotations

from dataclasses import dataclass, field

from protocol import Frame
from server.access.org_rights import OrgRight
from server.access.rights import Right
from server.ratelimit import RateClass


@dataclass(frozen=True, slots=True)
class Http:
    """One HTTP route of an operation, under ``/api/v1``.

    Path parameters, query parameters (``query``: booleans and integers; ``text_query``:
    strings) and the JSON body are merged into the frame's fields.
    """

    method: str
    path: str
    query: tuple[str, ...] = ()
    text_query: tuple[str, ...] = ()
    status: int = 200  # on success; 201 for a created resource
    # The success body is an archive streamed as it is read (application/zip), planned from
    # the reply the row's handler gives; the reply itself travels over WebSocket only.
    stream: bool = False


@dataclass(frozen=True, slots=True)
class Operation:
    frame: type[Frame]
    rate: RateClass
    summary: str  # one line, for the docs and the OpenAPI document
    right: Right | None = None
    when: tuple[tuple[str, Right], ...] = ()
    http: tuple[Http, ...] = ()  # none: WebSocket only
    # Appends to the sphere's stream: acknowledged with ``ack``, idempotent on ``message_id``,
    # and sequenced in the order each connection sent them.
    writes: bool = False
    # The frame a success is answered with (over HTTP: the JSON body).
    reply: type[Frame] = field(kw_only=True)
    org_right: OrgRight | None = field(default=None, kw_only=True)

    def rights_for(self, frame: Frame) -> tuple[Right, ...]:
        """The rights ``frame`` needs in its sphere."""
        chosen = tuple(right for name, right in self.when if getattr(frame, name) is not None)
        if chosen:
            return chosen
        return (self.right,) if self.right is not None else ()
