"""What each client request does, shared by the WebSocket gateway and the HTTP API.

- ``table``: the operation table — every request, its right, rate class and HTTP routes;
- ``dispatch``: ``Operations``, the one path from a frame through the rights check to its
  handler;
- ``context``: what handlers receive (``Caller``, ``Deps``) and the write hand-off;
- ``messages``, ``spheres``: the handlers, one module per capability (conversations and
  governance have packages of their own: ``server.conversations``, ``server.governance``).
"""

from server.operations.context import Caller, PreparedWrite, now_ms
from server.operations.dispatch import Operations
from server.operations.row import Http, Operation
from server.operations.table import BY_FRAME, OPERATIONS, RATE_CLASSES, WRITES

__all__ = [
    "BY_FRAME",
    "OPERATIONS",
    "RATE_CLASSES",
    "WRITES",
    "Caller",
    "Http",
    "Operation",
    "Operations",
    "PreparedWrite",
    "now_ms",
]
