"""The server's layers import only downwards (docs/ARCHITECTURE.md, "Layers"): a small AST check.

api -> services -> (inference, index, preprocess, fetch, sources) -> media -> core (bundle, settings,
errors, ids, metrics). Every import in server/ is checked, including those inside functions and
under TYPE_CHECKING; nothing in server/ may import the CLI package (omnivec.* outside omnivec.server).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "server"
RANK = {
    "api": 4,
    "services": 3,
    "inference": 2,
    "index": 2,
    "preprocess": 2,
    "fetch": 2,
    "sources": 2,
    "media": 1,
    "bundle": 0,
    "settings": 0,
    "errors": 0,
    "ids": 0,
    "metrics": 0,
}


def _unit(module: str) -> str | None:
    """'omnivec.server.index.edge' -> 'index'; None for modules outside the server."""
    parts = module.split(".")
    if parts[:2] != ["omnivec", "server"] or len(parts) < 3:
        return None
    return parts[2]


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in a server file."""
    package = ["omnivec", "server", *path.relative_to(SERVER).with_suffix("").parts][:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:  # from . import x, y: each name is a module of the package
                    out += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
                    continue
            else:
                module = node.module or ""
            out.append((node.lineno, module))
    return out


def violations() -> list[str]:
    found = []
    for path in sorted(SERVER.rglob("*.py")):
        rel = path.relative_to(SERVER)
        unit = rel.parts[0].removesuffix(".py")
        if unit == "__init__":
            continue
        assert unit in RANK, f"server/{rel}: place {unit!r} in a layer (RANK in this test and the drawing in docs/ARCHITECTURE.md)"
        for line, module in _imports(path):
            if module.startswith("omnivec.") and not module.startswith("omnivec.server"):
                found.append(f"server/{rel}:{line} imports {module} (the server must not import the CLI package)")
                continue
            target = _unit(module)
            if target is None or target == unit or target == "__init__":
                continue
            if RANK[target] >= RANK[unit]:
                found.append(f"server/{rel}:{line} imports {module}: {unit} (layer {RANK[unit]}) may only import lower layers, not {target} (layer {RANK[target]})")
    return found


def test_server_layers_import_only_downwards():
    assert violations() == []


def test_the_check_sees_relative_and_absolute_imports(tmp_path):
    """The resolver behind the check, on the shapes of import it must understand."""
    probe = SERVER / "services" / "collections.py"
    modules = {m for _, m in _imports(probe)}
    assert "omnivec.server.errors" in modules and "omnivec.server.index.store" in modules
    assert _unit("omnivec.server.index.edge") == "index" and _unit("omnivec.cli") is None
