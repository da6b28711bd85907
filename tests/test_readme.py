"""The README's snippets run as written: every ```python block, and every `worldsim` command line of the ```bash
blocks, with tiny budgets (fewer steps, a tiny model) so the suite stays fast.

A block is skipped only when the README says why in a comment on the line before it:
`<!-- readme-test: skip REASON -->`. Other shell lines (pip, cp, pytest itself) are the reader's to run: installing
needs the network, copying into the package would overwrite the shipped model, and pytest is what runs this.
Command lines within one block run in order in one folder, as a reader would (collect, then train on it...).
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest

from worldsim.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
SKIP = re.compile(r"<!--\s*readme-test:\s*skip\s+(.*?)\s*-->")

TINY_DATA = {"steps": "960", "workers": "1", "max_episode_steps": "40", "shard_steps": "320"}
TINY_AE = {"optim.steps": "4", "optim.warmup": "1", "model.width": "8", "batch_size": "4", "eval_frames": "8",
           "stats_frames": "32", "holdout": "0.3", "loop.eval_every": "0"}
TINY_WORLD = {"dit.width": "24", "dit.depth": "1", "dit.heads": "2", "dit.context": "4", "clip_len": "4",
              "batch_size": "2", "eval_clips": "1", "eval_context": "2", "horizons": "[1,2]",
              "eval_denoise_steps": "[1]", "holdout": "0.3", "optim.steps": "2", "optim.warmup": "1",
              "loop.eval_every": "0"}
# The budget of each command: these keys replace the README's values or are added to them.
TINY_REWARD = {"width": "8", "depth": "1", "batch_size": "8", "holdout": "0.3", "optim.steps": "2",
               "optim.warmup": "1", "loop.eval_every": "0"}
BUDGETS = {("collect",): TINY_DATA, ("train", "ae"): TINY_AE, ("train", "world"): TINY_WORLD,
           ("train", "reward"): TINY_REWARD,
           ("dream",): {"steps": "2"}, ("play",): {"steps": "1", "fps": "0", "scale": "1"}, ("curves",): {},
           ("restyle",): {"length": "3", "steps": "1"}, ("connect",): {"length": "2", "transition": "2", "steps": "1"},
           ("extend",): {"length": "2", "transition": "2", "steps": "1"},
           ("features",): {"seeds": "1", "clips": "2", "length": "3", "transition": "1"},
           ("events",): {"episodes": "1", "steps": "60", "per_kind": "4"},
           ("agent", "train"): {"total_steps": "64", "num_envs": "2", "num_steps": "32", "update_epochs": "1",
                                "eval_episodes": "0"},  # a dream episode is up to 1,000 world-model steps
           ("agent", "eval"): {"episodes": "2", "num_envs": "2"}}
# A user's own env, as the README's "Your own Gymnasium env" names it: CartPole's frames under another name.
MYPKG = '''import gymnasium as gym

gym.register("MyEnv-v0", entry_point="gymnasium.envs.classic_control.cartpole:CartPoleEnv", max_episode_steps=60)
'''


def blocks() -> list:
    """pytest params of (language, code), one per fenced block, with its README line in the id."""
    lines, found, i = README.read_text().splitlines(), [], 0
    while i < len(lines):
        fence = re.fullmatch(r"```(\w+)", lines[i].strip())
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        code = "\n".join(lines[i + 1:end])
        skip = SKIP.search(lines[i - 1]) if i else None
        marks = [pytest.mark.skip(reason=f"README says: {skip.group(1)}")] if skip else []
        if fence.group(1) in ("python", "bash"):
            found.append(pytest.param(fence.group(1), code, id=f"README.md:{i + 1}", marks=marks))
        i = end + 1
    return found


def commands(script: str) -> list[list[str]]:
    """The `worldsim` command lines of a shell block (comments dropped, `a && b` split), as argv lists."""
    argvs = []
    for line in script.splitlines():
        for part in line.split("#", 1)[0].split("&&"):
            words = shlex.split(part)
            if words[:1] == ["worldsim"]:
                argvs.append(words[1:])
    return argvs


def shrink(argv: list[str]) -> list[str]:
    """argv with its command's budget: README values of those keys replaced, missing ones added."""
    if "--help" in argv or "-h" in argv:
        return argv
    budget = next((b for cmd, b in BUDGETS.items() if tuple(argv[:len(cmd)]) == cmd), None)
    assert budget is not None, f"worldsim {' '.join(argv)}: no budget for this command in {__file__}; add one"
    budget = dict(budget)
    if argv[0] == "collect" and not any(a.startswith("env=") and "Craft2D" not in a for a in argv):
        budget["env_kwargs.world_width"] = "64"  # a narrow Craft2D world generates faster
    kept = [a for a in argv if a.split("=", 1)[0] not in budget]
    return kept + [f"{k}={v}" for k, v in budget.items()]


def test_the_readme_has_snippets_and_every_command_a_budget():
    params = blocks()
    assert {p.values[0] for p in params} == {"python", "bash"} and len(params) >= 8
    for p in params:
        if p.values[0] == "bash" and not p.marks:
            for argv in commands(p.values[1]):
                shrink(argv)  # a command without a budget fails here, by name, rather than running for minutes


@pytest.mark.parametrize("language, code", blocks())
def test_snippet_runs(language, code, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "envs.py").write_text(MYPKG)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mypkg", raising=False)
    monkeypatch.delitem(sys.modules, "mypkg.envs", raising=False)
    if language == "python":
        exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})
        return
    for argv in commands(code):
        assert main(shrink(argv)) == 0, f"worldsim {' '.join(argv)}: {capsys.readouterr().err}"
