"""The package's layout holds: imports go one way (ui and cli -> stages -> models, lora, config -> shared), no
circles, every folder says in its __init__ what lives there, and the library never imports ipywidgets."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lorakit"

# Lowest first. A module may import from a lower layer, or from its own folder; never from a higher layer,
# and never sideways from another folder of the same layer (train and evaluate stay independent).
LAYERS: list[set[str]] = [
    {"errors", "files"},
    {"shipped"},
    {"config"},
    {"project"},
    {"models", "pictures"},
    {"lora"},
    {"dataset"},
    {"doctor"},
    {"train", "evaluate"},
    {"demo"},
    {"ui", "cli"},
    {"__main__"},
]
LAYER_OF = {room: i for i, rooms in enumerate(LAYERS) for room in rooms}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def room(module: str) -> str:
    """'lorakit.train.loop' -> 'train'; 'lorakit.files' -> 'files'."""
    return module.split(".")[1] if module.count(".") else ""


def internal_imports(path: Path) -> dict[str, int]:
    """{imported lorakit module: line} for every import in the file, at the top or inside a function."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lorakit"):
            for alias in node.names:  # 'from lorakit.demo import toyworld' imports the module lorakit.demo.toyworld
                sub = f"{node.module}.{alias.name}"
                found.setdefault(sub if MODULES.get(sub) else node.module, node.lineno)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("lorakit"):
                    found.setdefault(alias.name, node.lineno)
    return found


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {name: internal_imports(path) for name, path in MODULES.items()}


def test_every_room_has_a_layer():
    rooms = {room(m) for m in MODULES if m != "lorakit"}
    assert rooms <= set(LAYER_OF), f"folders or modules without a layer: {sorted(rooms - set(LAYER_OF))}"


def test_imports_never_go_up_or_sideways():
    bad = []
    for name, imports in GRAPH.items():
        if name == "lorakit":
            continue
        here = room(name)
        for target, line in imports.items():
            there = room(target)
            if there == here or target == "lorakit":
                continue
            if LAYER_OF[there] >= LAYER_OF[here]:
                bad.append(f"{MODULES[name].relative_to(PACKAGE.parent)}:{line} {name} -> {target}")
    assert not bad, "imports from a layer above (or beside):\n" + "\n".join(bad)


def test_no_import_circles():
    state: dict[str, int] = {}
    circles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for target in GRAPH.get(node, {}):
            if target not in MODULES:
                continue
            if state.get(target) == 1:
                circles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif not state.get(target):
                visit(target, [*stack, target])
        state[node] = 2

    for name in MODULES:
        if not state.get(name):
            visit(name, [name])
    assert not circles, "import circles:\n" + "\n".join(circles)


@pytest.mark.parametrize("folder", sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py")))
def test_each_folder_says_what_lives_there(folder):
    doc = ast.get_docstring(ast.parse((PACKAGE / folder / "__init__.py").read_text(encoding="utf-8")))
    assert doc and "import" in doc.lower(), f"lorakit/{folder}/__init__.py: say in one line what lives here and what it may import"


def test_the_library_never_imports_ipywidgets():
    def imports_widgets(path: Path) -> bool:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] == "ipywidgets" for n in names):
                return True
        return False

    users = [name for name, path in MODULES.items() if room(name) != "ui" and imports_widgets(path)]
    assert not users, f"only lorakit.ui may import ipywidgets: {users}"


def test_the_checker_sees_a_violation(tmp_path):
    """The layer rule itself can fail: a made-up config module importing the training loop is reported."""
    fake = tmp_path / "lorakit" / "config" / "bad.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("from lorakit.train.loop import train\n")
    imports = {t: 1 for t in ["lorakit.train.loop"]}
    assert LAYER_OF[room("lorakit.train.loop")] > LAYER_OF[room("lorakit.config.bad")]
    assert internal_imports(fake) == imports
