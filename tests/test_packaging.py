"""The only import name worldsim installs is `worldsim`: users keep their own `envs` and `agents` modules."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {"worldsim": "worldsim", "envs": "worldsim.envs", "agents": "worldsim.agents"}  # folder -> import name
DATA = {"configs": "worldsim.configs"}  # folders of data files (the recipes), installed under worldsim too


def test_the_package_list_names_every_folder_of_the_tree_under_worldsim():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = set()
    for folder, name in MAPPED.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            on_disk.add(".".join((name, *rel)))
    assert set(config["packages"]) == on_disk | set(DATA.values())
    assert config["package-dir"] == {name: folder for folder, name in {**MAPPED, **DATA}.items()}
    assert config["package-data"]["worldsim.configs"] == ["**/*.yaml"]


def test_no_module_imports_the_top_level_folders_by_their_own_names():
    offenders = []
    for folder in (*MAPPED, "tests"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
                offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in ("envs", "agents")]
    assert offenders == []


def test_a_users_own_envs_and_agents_modules_do_not_shadow_worldsims(tmp_path):
    (tmp_path / "envs.py").write_text("raise RuntimeError('the user envs.py was imported')\n")
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "__init__.py").write_text("raise RuntimeError('the user agents/ was imported')\n")
    script = textwrap.dedent("""
        import gymnasium as gym
        import worldsim
        from worldsim.agents.base import make_agent

        env = gym.make("worldsim/Craft2D-v0")
        obs, _ = env.reset(seed=0)
        agent = make_agent("explorer", env.action_space, "worldsim/Craft2D-v0")
        print(obs.shape, type(agent).__name__)
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["(64,", "64,", "3)", "ExplorerAgent"]
