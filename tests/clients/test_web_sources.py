"""The web client's modules, read as text: no API that parses a string as HTML, so no data
the server sends can become markup; and each module stays small enough to read whole."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

WEB = Path(__file__).resolve().parents[2] / "clients" / "web"
MODULES = sorted(WEB.glob("*.js"))
# Every way a browser turns a string into nodes or script.
HTML_SINKS = re.compile(
    r"\b(innerHTML|outerHTML|insertAdjacentHTML|createContextualFragment|DOMParser|"
    r"document\.write|srcdoc|eval|new Function)\b"
)
# The house's limit on a file's length.
MAX_LINES = 600


def test_there_are_modules() -> None:
    assert len(MODULES) > 10


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_no_html_parsing(module: Path) -> None:
    found = [
        f"{module.name}:{number}: {line.strip()}"
        for number, line in enumerate(module.read_text().splitlines(), 1)
        if HTML_SINKS.search(line)
    ]
    assert not found, found


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_small_modules(module: Path) -> None:
    assert len(module.read_text().splitlines()) <= MAX_LINES
