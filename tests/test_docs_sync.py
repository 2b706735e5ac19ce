"""The docs name every wire code, frame, session state and option that the code defines.

A code, frame or option added without its documentation fails here, and so does a table row
whose retryable flag, HTTP status or reconnect advice disagrees with the code. Every JSON frame
example in ``docs/protocol.md`` must also decode with the real codec.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from protocol import (
    CLIENT_FRAMES,
    SERVER_FRAMES,
    CloseCode,
    ErrorCode,
    Frame,
    JsonCodec,
    SessionState,
)
from server.config import Config
from server.docs_tables import GENERATED, Block, between_markers
from server.http_api import STATUS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PROTOCOL = (DOCS / "protocol.md").read_text(encoding="utf-8")
OPERATIONS = (DOCS / "operations.md").read_text(encoding="utf-8")

_JSON_BLOCK = re.compile(r"^```json\n(.*?)\n```$", re.MULTILINE | re.DOTALL)
_CLIENT_TYPES = {cls.TYPE for cls in CLIENT_FRAMES}
_SERVER_TYPES = {cls.TYPE for cls in SERVER_FRAMES}


def section(text: str, title: str) -> str:
    """The body of the level-2 section whose heading contains ``title``."""
    match = re.search(rf"^## [^\n]*{re.escape(title)}[^\n]*\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match is not None, f"docs/protocol.md has no section titled {title!r}"
    return match.group(1)


def table_rows(text: str) -> dict[str, list[str]]:
    """Markdown table rows keyed by their first cell."""
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("|"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            rows.setdefault(cells[0], cells)
    return rows


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


@pytest.mark.parametrize("code", list(ErrorCode), ids=str)
def test_every_error_code_is_in_the_error_table(code: ErrorCode) -> None:
    assert f"`{code.value}`" in PROTOCOL
    row = table_rows(section(PROTOCOL, "Error codes")).get(f"`{code.value}`")
    assert row is not None, f"no row for {code.value} in the error code table"
    assert row[-2] == yes_no(code.retryable), f"{code.value}: retryable should be {code.retryable}"
    assert row[-1] == str(STATUS[code]), f"{code.value}: HTTP status should be {STATUS[code]}"


@pytest.mark.parametrize("code", list(CloseCode), ids=lambda c: str(int(c)))
def test_every_close_code_is_in_the_close_table(code: CloseCode) -> None:
    assert f"`{int(code)}`" in PROTOCOL
    row = table_rows(section(PROTOCOL, "Close codes")).get(f"`{int(code)}`")
    assert row is not None, f"no row for {int(code)} in the close code table"
    assert row[-1] == yes_no(code.reconnect), f"{int(code)}: reconnect should be {code.reconnect}"


@pytest.mark.parametrize("frame", [*CLIENT_FRAMES, *SERVER_FRAMES], ids=lambda f: f.TYPE)
def test_every_frame_type_has_a_section(frame: type[Frame]) -> None:
    heading = re.compile(rf"^#{{2,4}} [^\n]*`{re.escape(frame.TYPE)}`", re.MULTILINE)
    assert heading.search(PROTOCOL), f"docs/protocol.md has no heading for `{frame.TYPE}`"


@pytest.mark.parametrize("state", list(SessionState), ids=lambda s: s.value)
def test_every_session_state_is_documented(state: SessionState) -> None:
    states = section(PROTOCOL, "Session states")
    assert f"`{state.value}`" in states
    assert re.search(rf"\b{state.value}\b", states.split("```mermaid", 1)[1].split("```")[0])


def test_frame_examples_decode() -> None:
    codec = JsonCodec(max_frame_bytes=1 << 20)
    checked = 0
    for block in _JSON_BLOCK.findall(PROTOCOL):
        data = json.loads(block)
        kind = data.get("type") if isinstance(data, dict) else None
        if kind in _CLIENT_TYPES:
            codec.decode_client(block)
        elif kind in _SERVER_TYPES:
            codec.decode_server(block)
        else:
            assert kind is None, f"example of unknown frame type {kind!r}"
            continue
        checked += 1
    assert checked >= len(CLIENT_FRAMES) + len(SERVER_FRAMES)


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(Config)])
def test_every_option_is_in_operations(name: str) -> None:
    flag = "--" + name.replace("_", "-")
    assert re.search(rf"`{re.escape(flag)}`", OPERATIONS), f"{flag} is not in docs/operations.md"
    assert f"CLOISON_{name.upper()}" in OPERATIONS


@pytest.mark.parametrize("block", list(GENERATED), ids=lambda b: b.name)
def test_generated_tables_are_current(block: Block) -> None:
    """The rights and operation tables in the docs are exactly what the code generates."""
    text = (ROOT / block.path).read_text(encoding="utf-8")
    held = between_markers(text, block)
    assert held is not None, f"{block.path} lost its {block.begin} ... {block.end} markers"
    assert held == GENERATED[block](), (
        f"{block.path}: the {block.name} table is stale; regenerate it with "
        "`python -m server.docs_tables` (from the repository root)"
    )
