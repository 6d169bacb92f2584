"""The house's layering, written down once and checked by parsing the imports.

A room (a top-level module or sub-package of ``finescale``) imports only rooms on lower floors;
the maths rooms import nothing of finescale at all; no module imports itself back through
others. Every import counts, also those inside functions (they hide an arrow, they do not
remove it). Modules stay short: at most MAX_LINES lines, but for the long ones listed, which may
shrink and must not grow.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "src" / "finescale"

#: Floor of each room, from the ground up: a room imports rooms of lower floors only. config sits
#: above the maths rooms: its model.network and model.edm sections are their settings classes.
FLOORS: dict[str, int] = {
    "version": 0,
    "console": 0,
    "io": 0,
    "nn": 1,
    "diffusion": 1,
    "verify": 1,
    "config": 2,
    "data": 3,
    "models": 4,
    "checkpoints": 5,
    "training": 6,
    "generation": 6,
    "baselines": 6,
    "evaluation": 6,
    "atmorep": 7,
    "pipeline": 7,
    "api": 8,
    "cli": 8,
    "finescale": 9,  # the package root, the front door: hands on __version__ and the Python API
}
#: Rooms of pure maths (array and tensor functions): they import nothing of finescale.
PURE = {"nn", "diffusion", "verify"}

#: at most this many lines per module, as `ruff format` writes it (make test checks the format)
MAX_LINES = 400


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _imports() -> dict[str, set[str]]:
    """finescale module -> the finescale modules it imports (anywhere in the file).

    ``from finescale.data import grids`` imports the module finescale.data.grids;
    ``from finescale.data.grids import coarsen`` the module finescale.data.grids.
    """
    modules = {_module(p) for p in PACKAGE.rglob("*.py")}
    found: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        module = _module(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package of this module
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                names = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                    for a in node.names
                ]
            else:
                continue
            for name in names:
                while name and name not in modules:  # "finescale.x.y.name" -> its module
                    name = name.rpartition(".")[0]
                if name and name != module:
                    found[module].add(name)
    return found


def test_every_room_has_a_floor():
    rooms = {_room(_module(p)) for p in PACKAGE.rglob("*.py")}
    assert rooms - set(FLOORS) == set(), "new room: give it a floor in FLOORS"


def test_rooms_import_only_rooms_below_them():
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in _imports().items()
        for target in targets
        if _room(target) != _room(module) and FLOORS[_room(target)] >= FLOORS[_room(module)]
    )
    assert upward == []


def test_maths_rooms_import_nothing_of_finescale():
    outside = sorted(
        f"{module} -> {target}"
        for module, targets in _imports().items()
        if _room(module) in PURE
        for target in targets
        if _room(target) != _room(module)
    )
    assert outside == []


def test_no_module_imports_itself_back():
    graph = _imports()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_the_checks_catch_an_upward_arrow_and_a_cycle(tmp_path, monkeypatch):
    """The checks above can fail: a copy of the package with a cycle and an upward import."""
    import shutil

    copy = tmp_path / "finescale"
    shutil.copytree(PACKAGE, copy)
    (copy / "verify" / "scores.py").write_text(
        (copy / "verify" / "scores.py").read_text() + "\nfrom finescale.data import grids\n"
    )
    io_init = copy / "io" / "__init__.py"
    io_init.write_text(io_init.read_text() + "\nimport finescale.console\n")
    (copy / "console.py").write_text((copy / "console.py").read_text() + "\nimport finescale.io\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", copy)
    graph = _imports()
    assert "finescale.data.grids" in graph["finescale.verify.scores"]
    assert (
        "finescale.console" in graph["finescale.io"]
        and "finescale.io" in graph["finescale.console"]
    )
    for check in (
        test_rooms_import_only_rooms_below_them,
        test_maths_rooms_import_nothing_of_finescale,
        test_no_module_imports_itself_back,
    ):
        try:
            check()
        except AssertionError:
            continue
        raise AssertionError(f"{check.__name__} passed on a package that breaks it")


def test_modules_stay_short():
    too_long = {}
    for path in PACKAGE.rglob("*.py"):
        name = path.relative_to(PACKAGE).as_posix()
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            too_long[name] = lines
    assert too_long == {}, f"split these modules (at most {MAX_LINES} lines): {too_long}"


def _private_imports(package: Path) -> list[str]:
    """``module -> name`` for every private name (one leading underscore) imported from another
    finescale module: each marks a helper that should be public where it is shared."""
    found = []
    for path in package.rglob("*.py"):
        module = ".".join(path.relative_to(package.parent).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("finescale"):
                found += [
                    f"{module} -> {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    return sorted(found)


def test_no_private_name_crosses_modules(tmp_path):
    assert _private_imports(PACKAGE) == []
    # and the check can fail: a module importing another's private helper
    (tmp_path / "finescale").mkdir()
    (tmp_path / "finescale" / "a.py").write_text("from finescale.data.grids import _hidden\n")
    assert _private_imports(tmp_path / "finescale") == [
        "finescale.a -> finescale.data.grids._hidden"
    ]
