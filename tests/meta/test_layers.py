"""DESIGN §2: imports only go down the layers; transports never import the app layer."""

from __future__ import annotations

import ast
from pathlib import Path

import tidings

PACKAGE = Path(tidings.__file__).parent

LAYER = {
    "errors": 0,
    "config": 0,
    "message": 1,
    "transports": 2,
    "store": 2,
    "eventsourcing": 3,
    "cqrs": 3,
    "app": 4,
    "demo": 5,
    "gateway": 6,
    "cli": 6,
}


def _layer_of(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "tidings" or len(parts) < 2:
        return None
    return LAYER.get(parts[1])


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_layers_every_import_goes_down_or_sideways_within_a_package() -> None:
    problems: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        own = _layer_of(".".join(rel.parts))
        if own is None:
            continue
        own_pkg = rel.parts[1]
        for name in _imports(path):
            target = _layer_of(name)
            if target is None:
                continue
            if target > own:
                problems.append(f"{'.'.join(rel.parts)} imports {name} (upward)")
            elif own_pkg in ("transports", "store") and name.split(".")[1] in (
                "store" if own_pkg == "transports" else "transports",
            ):
                problems.append(f"{'.'.join(rel.parts)} imports {name} (sideways)")
    assert problems == []


def test_layers_every_tidings_subpackage_is_classified() -> None:
    unknown = [
        p.name
        for p in PACKAGE.iterdir()
        if ((p.is_dir() and (p / "__init__.py").exists()) or p.suffix == ".py")
        and p.stem not in LAYER
        and p.name not in ("__init__.py", "py.typed", "__main__.py")
    ]
    assert unknown == [], f"add these to LAYER in {__file__}: {unknown}"
