"""The layout the link layer promises, checked from the source: the library never imports
the services, no transport imports another, modules stay small, abstract bases use abc."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "arroyo_core"
MAX_LINES = 400


def modules(top: Path) -> list[Path]:
    return sorted(top.rglob("*.py"))


def imported(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[:len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            names.add(name)
            names.update(f"{name}.{alias.name}" for alias in node.names)
    return names


def test_imported_resolves_relative_imports():
    names = imported(LIBRARY / "transports" / "zmq" / "push.py")
    assert "arroyo_core.transport" in names and "arroyo_core.transports.zmq.handoff" in names


@pytest.mark.parametrize("path", modules(LIBRARY), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_library_never_imports_the_services(path):
    assert not {n for n in imported(path) if n == "services" or n.startswith("services.")}


def test_no_transport_imports_another():
    transports = [p for p in (LIBRARY / "transports").iterdir() if p.is_dir()
                  and not p.name.startswith("__")]
    assert {p.name for p in transports} >= {"zmq", "redis"}
    for transport in transports:
        others = {f"arroyo_core.transports.{o.name}" for o in transports if o != transport}
        for path in modules(transport):
            crossing = {n for n in imported(path)
                        if any(n == o or n.startswith(o + ".") for o in others)}
            assert not crossing, f"{path.relative_to(ROOT)} imports {sorted(crossing)}"


@pytest.mark.parametrize("path", modules(LIBRARY) + modules(ROOT / "services"),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_stay_small(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


@pytest.mark.parametrize("path", modules(LIBRARY), ids=lambda p: str(p.relative_to(ROOT)))
def test_abstract_methods_use_abc_not_not_implemented(path):
    assert "raise NotImplementedError" not in path.read_text()
