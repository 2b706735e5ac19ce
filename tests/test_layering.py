"""Which way imports point: the table in STYLE.md, checked by parsing every module with ``ast``.

| package    | may import            |
|------------|-----------------------|
| protocol   | nothing of ours       |
| storage    | protocol              |
| server     | protocol, storage     |
| clients    | protocol              |
| scripts    | clients, protocol     |

``protocol`` is sans-I/O, so it may not import ``asyncio``, ``socket``, ``time`` or
``selectors`` either. Relative imports are resolved to absolute names first, and
``importlib.import_module("...")`` / ``__import__("...")`` with a literal name count too, so a
lazy import cannot hide an arrow.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

ALLOWED: dict[str, frozenset[str]] = {
    "protocol": frozenset(),
    "storage": frozenset({"protocol"}),
    "server": frozenset({"protocol", "storage"}),
    "clients": frozenset({"protocol"}),
    "scripts": frozenset({"clients", "protocol"}),
}
OURS = frozenset(ALLOWED) | {"tests"}
# Sans-I/O: the protocol package neither waits, nor talks to the network, nor reads a clock.
FORBIDDEN_IN_PROTOCOL = frozenset({"asyncio", "socket", "time", "selectors"})


@dataclass(frozen=True)
class Imported:
    name: str  # absolute dotted name
    line: int


def module_name(path: Path) -> tuple[str, bool]:
    """(dotted name, is a package) of a file under ROOT."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name of ``from <level dots><target> import ...`` inside ``module``."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    if level - 1 >= len(package):
        raise ImportError(f"relative import beyond the top-level package in {module}")
    base = package[: len(package) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def imports_of(source: str, module: str, is_package: bool = False) -> list[Imported]:
    found: list[Imported] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend(Imported(alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                try:
                    base = resolve(module, is_package, node.level, node.module)
                except ImportError:  # Python refuses it too; report it rather than guess
                    found.append(Imported("." * node.level + (node.module or ""), node.lineno))
                    continue
                # ``from . import x`` may name a submodule x: record each one.
                names = [f"{base}.{a.name}" for a in node.names] if not node.module else [base]
                found.extend(Imported(name, node.lineno) for name in names)
            else:
                found.append(Imported(node.module or "", node.lineno))
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func) and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.append(Imported(first.value, node.lineno))
    return found


def _is_dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in ("__import__", "import_module")
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """Every forbidden arrow out of ``module``, as "module:line -> name" strings."""
    own = module.split(".")[0]
    out = []
    for imported in imports_of(source, module, is_package):
        top = imported.name.split(".")[0]
        unresolvable = imported.name.startswith(".")
        foreign = unresolvable or (top in OURS and top != own and top not in ALLOWED[own])
        io_in_protocol = own == "protocol" and top in FORBIDDEN_IN_PROTOCOL
        if foreign or io_in_protocol:
            out.append(f"{module}:{imported.line} -> {imported.name}")
    return out


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_the_allowed_way(package: str) -> None:
    files = modules(package)
    assert files, f"no modules found under {package}/"
    found = []
    for path in files:
        name, is_package = module_name(path)
        found += violations(path.read_text(encoding="utf-8"), name, is_package)
    assert found == [], "forbidden imports:\n" + "\n".join(found)


def test_the_main_packages_are_all_checked() -> None:
    for package in ("protocol", "storage", "server"):
        assert len(modules(package)) >= 3, package
    assert (ROOT / "protocol" / "codec.py") in modules("protocol")


# ---------------------------------------------------------------------------------------------
# The checker itself: each forbidden shape is caught, each allowed one is not.


@pytest.mark.parametrize(
    ("source", "module", "is_package"),
    [
        ("from server import app", "protocol.frames", False),
        ("import storage.base", "protocol.codec", False),
        ("from clients.client import Client", "protocol", True),
        ("from server.config import Config", "storage.sqlite", False),
        ("from ..server import app", "storage.sqlite", False),  # beyond the top-level package
        ("from ... import server", "server.broker.memory", False),
        ("from server import app", "clients.bot", False),
        ("from storage import Store", "clients.client", False),
        ("from server import hub", "scripts.loadtest", False),
        ("from storage import open_store", "scripts.bench_fanout", False),
        ("import time", "protocol.session", False),
        ("from time import monotonic", "protocol.codec", False),
        ("import asyncio.queues", "protocol.codec", False),
        ("import socket as s", "protocol.frames", False),
        ("import selectors", "protocol.frames", False),
        ("def f():\n    from server import app\n", "protocol.codec", False),  # lazy
        ("if TYPE_CHECKING:\n    from server.hub import Hub\n", "storage.base", False),
        ("import importlib\nimportlib.import_module('server.app')", "clients.client", False),
        ("from importlib import import_module\nimport_module('server')", "clients.chat", False),
        ("__import__('storage')", "clients.client", False),
        ("from tests.support import Client", "server.app", False),
    ],
)
def test_checker_catches(source: str, module: str, is_package: bool) -> None:
    assert len(violations(source, module, is_package)) == 1


@pytest.mark.parametrize(
    ("source", "module", "is_package"),
    [
        ("from protocol import Frame", "server.gateway", False),
        ("from storage import Store", "server.app", False),
        ("from protocol import Frame\nfrom clients import Client", "scripts.loadtest", False),
        ("from protocol import Frame", "clients.client", False),
        ("from protocol import Frame", "storage.base", False),
        ("from . import codec", "protocol", True),
        ("from .codec import JsonCodec", "protocol", True),
        ("from .frames import Frame", "protocol.codec", False),
        ("from .base import Broker", "server.broker.memory", False),
        ("from ..config import Config", "server.broker.redis", False),
        ("import asyncio\nimport time\nimport socket", "server.runner", False),
        ("import dataclasses, typing, enum", "protocol.frames", False),
        ("import timeit\nimport asyncio_extra", "protocol.codec", False),  # names, not prefixes
        ("from storage.sqlite import SqliteStore", "storage", True),
    ],
)
def test_checker_allows(source: str, module: str, is_package: bool) -> None:
    assert violations(source, module, is_package) == []


def test_relative_imports_resolve() -> None:
    assert resolve("server.broker.memory", False, 1, "base") == "server.broker.base"
    assert resolve("server.broker.memory", False, 2, "config") == "server.config"
    assert resolve("server.broker", True, 1, "memory") == "server.broker.memory"
    assert resolve("protocol", True, 1, None) == "protocol"
    with pytest.raises(ImportError):
        resolve("protocol.codec", False, 2, "x")


def test_module_names() -> None:
    assert module_name(ROOT / "protocol" / "__init__.py") == ("protocol", True)
    assert module_name(ROOT / "server" / "broker" / "memory.py") == ("server.broker.memory", False)
