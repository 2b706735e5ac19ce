"""The docs tables generated from the code: the rights tables and the operation table.

``docs/governance.md`` prints the rights table (``server.access.rights``) and the
organisation rights table (``server.access.org_rights``), ``docs/protocol.md`` the operation
table (``server.operations.table``), each between a pair
of HTML comment markers; ``tests/test_docs_sync.py`` fails when the docs hold anything else.
Regenerate with ``python -m server.docs_tables`` from the repository root.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from protocol import Privacy
from server.access.org_rights import ORG_RIGHTS, OrgRight, OrgStanding, org_standing_allows
from server.access.rights import Right, Standing, standing_allows
from server.operations.table import OPERATIONS, Operation

_NO = "—"


@dataclass(frozen=True, slots=True)
class Block:
    """A generated table: the file it lives in and the name of its markers."""

    path: str  # relative to the repository root
    name: str

    @property
    def begin(self) -> str:
        return f"<!-- {self.name}:begin -->"

    @property
    def end(self) -> str:
        return f"<!-- {self.name}:end -->"


RIGHTS_BLOCK = Block("docs/governance.md", "rights")
ORG_RIGHTS_BLOCK = Block("docs/governance.md", "org-rights")
OPERATIONS_BLOCK = Block("docs/protocol.md", "operations")


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = [_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows)]
    return "\n".join(lines)


def _where(types: Sequence[Privacy]) -> str:
    """A cell: in which sphere types a standing holds a right."""
    if len(types) == len(Privacy):
        return "yes"
    if not types:
        return _NO
    if len(types) * 2 <= len(Privacy):
        return ", ".join(t.value for t in types) + " only"
    return "not in " + ", ".join(t.value for t in Privacy if t not in types)


def _needed_by(right: Right) -> str:
    frames = [
        op.frame.TYPE
        for op in OPERATIONS
        if op.right is right or any(r is right for _, r in op.when)
    ]
    # No row names it: a handler checks it on a particular object (someone else's post).
    return ", ".join(f"`{name}`" for name in frames) or "checked by handlers"


def rights_table() -> str:
    """Every right, and where each standing holds it (``standing_allows``)."""
    header = ["right", *(s.value for s in Standing), "needed by"]
    rows = [
        [
            f"`{right.value}`",
            *(_where([p for p in Privacy if standing_allows(right, p, s)]) for s in Standing),
            _needed_by(right),
        ]
        for right in Right
    ]
    return _table(header, rows)


def _org_cell(right: OrgRight, standing: OrgStanding) -> str:
    """A cell: whether a standing holds an organisation right, and under which policy."""
    if org_standing_allows(right, standing):
        policy = ORG_RIGHTS[right].members_if
        held_by_role = standing is OrgStanding.MANAGER or policy is None
        return "yes" if held_by_role else f"while `{policy}` is on"
    return _NO


def org_rights_table() -> str:
    """Every organisation right, and which standing holds it (``org_standing_allows``)."""
    header = ["right", *(s.value for s in OrgStanding), "needed by"]
    rows = [
        [
            f"`{right.value}`",
            *(_org_cell(right, s) for s in OrgStanding),
            ", ".join(f"`{op.frame.TYPE}`" for op in OPERATIONS if op.org_right is right)
            or "checked by handlers",
        ]
        for right in OrgRight
    ]
    return _table(header, rows)


def _rights_of(op: Operation) -> str:
    cells = [f"org `{op.org_right.value}`"] if op.org_right is not None else []
    cells += [f"`{op.right.value}`"] if op.right is not None else []
    cells += [f"`{right.value}` with `{name}`" for name, right in op.when if right is not op.right]
    return "; ".join(cells) or _NO


def _routes_of(op: Operation) -> str:
    return "; ".join(f"`{http.method} {http.path}`" for http in op.http) or "WebSocket only"


def operations_table() -> str:
    """Every request: its frame, HTTP routes, the right it needs, its rate class, what it does."""
    header = ["frame", "HTTP (under `/api/v1`)", "right", "rate class", "what it does"]
    rows = [
        [f"`{op.frame.TYPE}`", _routes_of(op), _rights_of(op), op.rate.value, op.summary]
        for op in OPERATIONS
    ]
    return _table(header, rows)


GENERATED = {
    RIGHTS_BLOCK: rights_table,
    ORG_RIGHTS_BLOCK: org_rights_table,
    OPERATIONS_BLOCK: operations_table,
}


def between_markers(text: str, block: Block) -> str | None:
    """What ``text`` holds between the block's markers (None: the markers are missing)."""
    found = re.search(f"{re.escape(block.begin)}\n(.*?)\n?{re.escape(block.end)}", text, re.S)
    return None if found is None else found.group(1)


def replaced(text: str, block: Block, table: str) -> str:
    """``text`` with the block's content replaced by ``table``."""
    if between_markers(text, block) is None:
        raise ValueError(f"{block.path} has no {block.begin} ... {block.end} markers")
    pattern = f"{re.escape(block.begin)}\n.*?{re.escape(block.end)}"
    return re.sub(pattern, lambda _: f"{block.begin}\n{table}\n{block.end}", text, flags=re.S)


def main(argv: Sequence[str]) -> int:
    """Rewrite every generated block under the repository root (default: the current folder)."""
    root = Path(argv[0]) if argv else Path()
    for block, render in GENERATED.items():
        path = root / block.path
        path.write_text(replaced(path.read_text(encoding="utf-8"), block, render()), "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
