"""No import cycles between worldsim's modules (worldsim/, envs/, agents/), read statically from the source.

Every import counts, a lazy one inside a function too: it runs as soon as the function does, and a cycle through it
fails or half-initialises a module then (the game once imported the keyboard agent that imports the game). Only
imports under `if TYPE_CHECKING:` are left out, because they never run. Importing `a.b.c` also runs the packages
`a` and `a.b`, so those count as imported too (except the module's own parent packages, which Python has begun
importing before the module itself).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {"worldsim": "worldsim", "envs": "worldsim.envs", "agents": "worldsim.agents"}  # folder -> import name


def modules(root: Path, mapped: dict[str, str]) -> dict[str, Path]:
    """Import name -> source file, packages by their __init__.py."""
    out = {}
    for folder, name in mapped.items():
        for path in (root / folder).rglob("*.py"):
            parts = path.relative_to(root / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join((name, *parts))] = path
    return out


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside `if TYPE_CHECKING:` (or `typing.TYPE_CHECKING`) blocks."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skip


def import_graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the modules of `mods` that importing it runs."""

    def known(name: str) -> str | None:  # `from pkg import name` imports pkg.name when that is a module, else pkg
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for mod, path in mods.items():
        tree = ast.parse(path.read_text())
        skip = _type_checking_only(tree)
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        targets = []
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                targets += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package, up level - 1 packages
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                targets += [base] + [f"{base}.{a.name}" for a in node.names]
        deps = set()
        for target in targets:
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                name = known(".".join(parts[:i]))
                if name and not (mod == name or mod.startswith(name + ".")):  # own parents: already importing
                    deps.add(name)
        graph[mod] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_worldsim_envs_and_agents_import_no_module_cycle():
    graph = import_graph(modules(ROOT, MAPPED))
    assert "worldsim.agents.base" in graph and "worldsim.envs.craft2d.env" in graph  # the tree was read
    found = cycles(graph)
    explained = [f"{' <-> '.join(c)}: " + "; ".join(f"{m} imports {sorted(graph[m] & set(c))}" for m in c)
                 for c in found]
    assert found == [], "import cycles:\n" + "\n".join(explained)


def _tree(tmp_path: Path, files: dict[str, str]) -> dict[str, set[str]]:
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return import_graph(modules(tmp_path, {"pkg": "pkg"}))


def test_the_check_finds_a_cycle_through_a_lazy_import_and_through_a_package(tmp_path):
    graph = _tree(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/game/__init__.py": "from pkg.game.env import Env\n",
        "pkg/game/env.py": "def keys():\n    from pkg.agent import KEYS\n    return KEYS\n",
        "pkg/game/tiles.py": "",
        "pkg/agent.py": "from pkg.game.tiles import TILE\n",  # runs pkg/game/__init__, which imports env
    })
    assert graph["pkg.agent"] == {"pkg.game", "pkg.game.tiles"}
    assert cycles(graph) == [["pkg.agent", "pkg.game", "pkg.game.env"]]


def test_the_check_leaves_out_type_checking_imports_and_reads_relative_ones(tmp_path):
    graph = _tree(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n",
        "pkg/b.py": "from . import a\nfrom .a import thing\n",
    })
    assert graph["pkg.a"] == set() and graph["pkg.b"] == {"pkg.a"}
    assert cycles(graph) == []
