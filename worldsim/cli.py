"""The `worldsim` command. Every setting is key=value, the same in every command; `--help` (or `-h`) is the one flag.

    worldsim play [mode=dream|real|ghost checkpoint=CKPT seed=N scale=8]      play with the keyboard
    worldsim dream [checkpoint=CKPT steps=300 agent=explorer out=rollout.gif]  headless rollout to a GIF or MP4
    worldsim collect out=DIR [env=ID agent=NAME steps=N workers=K]          trajectories into a dataset
    worldsim train ae|world|pixel data=DIR [optim.steps=N loop.out=DIR ...] train (resumes a run in loop.out)
    worldsim train reward world=CKPT data=DIR                               a reward/end model, added to the world
    worldsim agent train [env=ID num_envs=N total_steps=N out=DIR]          PPO in the game, the dream or Atari
    worldsim agent eval POLICY|agent=NAME [env=ID episodes=100]             mean return and events of an agent
    worldsim curves RUN [RUN ...] [out=curves.png]                          training curves of runs, chained
    worldsim scaling RUN [RUN ...] [out=scaling.png]                         held-out loss and probes against FLOPs
    worldsim probe [checkpoint=CKPT | model=MOD:NAME suite=all out=probes]      probes.json and probes.md
    worldsim leaderboard [experiment=craft2d out=runs/leaderboard]            probe every model of a list, one table
    worldsim bench [only=[engine,loader] steps=20000 out=.]                speed table, written to bench.json
    worldsim recipe [stages=[...] ship=PATH]                                 the shipped model from nothing, resuming
    worldsim restyle|connect|extend data=DIR episode=N [prompt=TEXT ...]     edit clips with the world model
    worldsim features [checkpoint=CKPT out=features]                          prompt adherence and edits, measured
    worldsim export data=DIR id=NS/NAME-v0 / import id=NS/NAME-v0 out=DIR       Minari interchange

Each command parses its settings (Hydra overrides: nested keys with dots, lists as [a,b]) into a frozen dataclass and
hands it to the module that does the work; where configs/<command>/experiment/ has recipes, `experiment=NAME` selects
one. `worldsim COMMAND --help` lists every key with its default and meaning, and the recipes. The one exception to
key=value: `worldsim curves` and `worldsim scaling` also take their run directories as plain arguments (`runs=[a,b]`
works too), and `worldsim agent eval` its policy file (`policy=PATH` works too).

The parsing is written here rather than with argparse: argparse would take `--out x` apart before we could answer it
with `out=x`, and Hydra, not argparse, parses the settings.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from dataclasses import dataclass, field
from typing import Callable

from worldsim.config import check, check_out


@dataclass(frozen=True)
class CurvesConfig:
    runs: list[str] = field(default_factory=list, metadata={
        "help": "run directories (loop.out) or log.jsonl files, in training order (also as plain arguments)"})
    out: str = field(default="curves.png", metadata={"help": "the .png file to write"})
    title: str = field(default="", metadata={"help": "title of the loss panel (default: training loss)"})

    def __post_init__(self):
        check(len(self.runs) > 0, "runs", self.runs, "at least one run directory: worldsim curves RUN [RUN ...]")
        check_out("out", self.out, (".png",))


@dataclass(frozen=True)
class ScalingConfig:
    runs: list[str] = field(default_factory=list, metadata={
        "help": "`worldsim train world` run directories, one per model size (also as plain arguments)"})
    out: str = field(default="scaling.png", metadata={"help": "the .png file to write; the table goes beside it (.md)"})
    frame_shape: list[int] | None = field(default=None, metadata={
        "help": "[H, W] the FLOPs are counted at, for a run whose checkpoint and dataset are elsewhere (default: "
                "read from them)"})

    def __post_init__(self):
        check(len(self.runs) > 0, "runs", self.runs, "at least one run directory: worldsim scaling RUN [RUN ...]")
        check_out("out", self.out, (".png",))
        check(self.frame_shape is None or (len(self.frame_shape) == 2 and min(self.frame_shape) > 0), "frame_shape",
              self.frame_shape, "null or [H, W] in pixels")


def _scaling(cfg) -> int:
    from worldsim.train.scaling import main as scaling

    path, table = scaling(cfg.runs, cfg.out, cfg.frame_shape)
    print(table)
    print(f"wrote {path} and {path.with_suffix('.md')}")
    return 0


def _play(cfg) -> int:
    from worldsim.checkpoint import default_checkpoint
    from worldsim.play import NoDisplay, play

    if cfg.mode is None:  # the dream when there is one to play, else the real game
        mode = "dream" if cfg.checkpoint or default_checkpoint().exists() else "real"
        if mode == "real":
            print(f"the shipped world model is missing from this install ({default_checkpoint()}): playing the real "
                  "game (checkpoint=CKPT for a dream)")
        cfg = dataclasses.replace(cfg, mode=mode)
    try:
        result = play(cfg)
    except NoDisplay as err:
        print(f"worldsim play: {err}", file=sys.stderr)
        return 2
    line = f"played {result.ticks} ticks over {result.episodes} episode(s), total reward {result.total_reward:g}"
    if result.agreement:
        from worldsim.rollout import summarise

        s = summarise(result.agreement)
        line += (f"; cells that look the same in the dream and the real game (same sprite, same light) "
                 f"{s['seen']:.1%} on average, the sprites alone {s['sprites']:.1%}, the light level differing on "
                 f"{s['light_differs']:.0%} of ticks, the HUD on {s['hud_differs']:.0%}")
    print(line)
    return 0


def _dream(cfg) -> int:
    from worldsim.rollout import describe, run

    print(describe(run(cfg)))
    return 0


def _curves(cfg) -> int:
    from worldsim.train.curves import main as curves

    print(f"wrote {curves(cfg.runs, cfg.out, cfg.title)}")
    return 0


def _collect(cfg) -> int:
    from worldsim.data.collect import collect

    # a person plays in this process's window: worker processes would each want a keyboard
    check(cfg.agent != "human" or cfg.workers == 1, "workers", cfg.workers, "1 with agent=human (one person, "
          "one window)")
    collect(cfg)
    return 0


def _config(module: str, name: str) -> Callable[[], type]:
    def load() -> type:
        import importlib

        return getattr(importlib.import_module(module), name)

    return load


def _runner(module: str, name: str, done: str | None = None) -> Callable[[object], int]:
    def run(cfg) -> int:
        import importlib

        result = getattr(importlib.import_module(module), name)(cfg)
        if done:
            print(done.format(result))
        return 0

    return run


@dataclass(frozen=True)
class Command:
    help: str
    config: Callable[[], type]  # imported when the command runs: `worldsim --help` stays fast
    run: Callable[[object], int]
    usage: str = ""
    recipes: str | None = None  # its folder under configs/ where that is not the command's name (train ae: train_ae)


COMMANDS = {
    "play": Command("play in a pygame window: the learned world, the real game, or both side by side",
                    _config("worldsim.play", "PlayConfig"), _play, "[mode=dream|real|ghost] [checkpoint=CKPT] ...\n\n"
                    "Keys: arrows/WASD move, W/up/space jump, J mine, U mine up, S/down mine down, K place, L place "
                    "down, Q/tab next block, R restart, P pause, Ctrl+S save the last seconds, ESC quit."),
    "dream": Command("roll a world model out headless to a GIF or MP4, beside the real game for Craft2D",
                     _config("worldsim.rollout", "DreamConfig"), _dream, "[checkpoint=CKPT steps=300 out=rollout.gif]"),
    "collect": Command("collect trajectories from a Gymnasium env into a dataset",
                       _config("worldsim.data.collect", "CollectConfig"), _collect,
                       "out=DIR [env=ID agent=NAME steps=N workers=K ...]\n\nagent=human records a person's play "
                       "(a pygame window, workers=1; ESC stops, keeping the episodes already saved: shard_steps=1 "
                       "saves each as it ends)"),
    "curves": Command("plot training runs' curves to a PNG (a fine-tune continues its parent's steps)",
                      _config("worldsim.cli", "CurvesConfig"), _curves, "RUN [RUN ...] [out=curves.png title=TEXT]"),
    "scaling": Command("a compute-scaling study: held-out loss and probe scores of world-model runs against "
                       "their training FLOPs, to a PNG and a table", _config("worldsim.cli", "ScalingConfig"),
                       _scaling, "RUN [RUN ...] [out=scaling.png]"),
    "probe": Command("ask a world model what the real game knows; writes probes.json and probes.md",
                     _config("worldsim.probes.runner", "ProbeConfig"), _runner("worldsim.probes.runner", "run"),
                     "[checkpoint=CKPT | model=MODULE:NAME suite=all|permanence+causality... seeds=4 view_width=8 "
                     "out=DIR quick=true]"),
    "leaderboard": Command("probe every world model of a list the same way, one table: families, in / out of "
                           "distribution, step latency, parameters", _config("worldsim.probes.leaderboard",
                                                                           "LeaderboardConfig"),
                           _runner("worldsim.probes.leaderboard", "run"), "[experiment=NAME out=DIR seeds=4]"),
    "bench": Command("measure speed; prints a table and writes bench.json", _config("worldsim.bench", "BenchArgs"),
                     _runner("worldsim.bench", "run"), "[only=[engine,loader] steps=20000 repeats=5 data=DIR out=.]"),
    "recipe": Command("the shipped Craft2D model from nothing: collect, train ae, train world, fine-tune, ship; "
                      "each stage resumes", _config("worldsim.recipe", "RecipeConfig"),
                      _runner("worldsim.recipe", "run", "the recipe's model is {}"),
                      "[stages=[collect,ae,world,world_ft,ship] \"world=['optim.steps=500']\" ship=PATH]"),
    "events": Command("one step after each kind of event in real Craft2D play (mined, placed, moved, still): the "
                      "share of the changed cells a model gets right", _config("worldsim.probes.events", "EventsConfig"),
                      _runner("worldsim.probes.events", "run"), "[checkpoint=CKPT episodes=16 per_kind=64 out=events]"),
    "features": Command("measure a Craft2D model's Sora features: prompt adherence, restyle, connect, extend",
                        _config("worldsim.probes.features", "FeaturesConfig"),
                        _runner("worldsim.probes.features", "run"), "[checkpoint=CKPT seeds=4 clips=8 out=features]"),
    "restyle": Command("remake a clip under a prompt, its actions and layout kept (SDEdit with the world model)",
                       _config("worldsim.edit", "RestyleConfig"), _runner("worldsim.edit", "run_restyle", "{}"),
                       "data=DIR episode=N prompt=TEXT [strength=0.6 out=edit.gif]"),
    "connect": Command("join two clips with frames the world model makes, arriving exactly at the second",
                       _config("worldsim.edit", "ConnectConfig"), _runner("worldsim.edit", "run_connect", "{}"),
                       "data=DIR episode=N to_episode=M [transition=8 out=edit.gif]"),
    "extend": Command("extend a clip backward in time: frames that lead into it, from a prompt or from nothing",
                      _config("worldsim.edit", "ExtendConfig"), _runner("worldsim.edit", "run_extend", "{}"),
                      "data=DIR episode=N [prompt=TEXT transition=8 out=edit.gif]"),
    "export": Command("export a dataset to Minari", _config("worldsim.data.minari_io", "ExportConfig"),
                      _runner("worldsim.data.minari_io", "export_minari", "exported {} episodes to Minari"),
                      "data=DIR id=NAMESPACE/NAME-v0"),
    "import": Command("import a Minari dataset", _config("worldsim.data.minari_io", "ImportConfig"),
                      _runner("worldsim.data.minari_io", "import_minari", "imported {} episodes from Minari"),
                      "id=NAMESPACE/NAME-v0 out=DIR"),
}
TRAIN = {
    "ae": Command("train the autoencoder (video compression network)",
                  _config("worldsim.train.autoencoder", "TrainAEConfig"), _runner("worldsim.train.autoencoder", "run"),
                  "data=DIR [optim.steps=N loop.out=DIR ...]", "train_ae"),
    "world": Command("train the world model (the DiT over the autoencoder's latents)",
                     _config("worldsim.train.world", "TrainWorldConfig"), _runner("worldsim.train.world", "run"),
                     "data=DIR ae=CKPT [model=S optim.steps=N loop.out=DIR ...]", "train_world"),
    "pixel": Command("train a pixel-space baseline of the probe leaderboard: a frame-stacking U-Net, diffusion "
                     "(DIAMOND's kind) or a deterministic regressor",
                     _config("worldsim.baselines.train", "TrainPixelConfig"),
                     _runner("worldsim.baselines.train", "run"),
                     "data=DIR [model.objective=diffusion|regression optim.steps=N loop.out=DIR ...]", "train_pixel"),
    "reward": Command("train a reward/end model for a world model: it pays from the frames before a step and the "
                      "action; writes the world with it added", _config("worldsim.train.reward", "TrainRewardConfig"),
                      _runner("worldsim.train.reward", "run"),
                      "world=CKPT data=DIR [views=[DIR,...] optim.steps=N loop.out=DIR ...]", "train_reward"),
}
AGENT = {
    "train": Command("train a PPO policy in an env with image observations and discrete actions (Craft2D, the "
                     "dream, Atari)", _config("worldsim.agents.ppo", "Args"),
                     _runner("worldsim.agents.evaluate", "train_and_evaluate", "the policy is {}"),
                     "[env=ID num_envs=N total_steps=N out=DIR env_kwargs.KEY=VALUE ...]", "agent"),
    "eval": Command("play a policy, or a scripted agent, for N episodes: return mean ± std and the env's events",
                    _config("worldsim.agents.evaluate", "EvalConfig"), _runner("worldsim.agents.evaluate", "run"),
                    "POLICY [env=ID episodes=100 ...]   or   worldsim agent eval agent=random|explorer [...]"),
}
GROUPS = {"train": ("TASK", TRAIN), "agent": ("ACTION", AGENT)}  # commands with a second word
HELP = ("-h", "--help")
FLAG = re.compile(r"--?[A-Za-z]")  # `--out`, `-o`; not `-5`, a value


def usage() -> str:
    lines = ["usage: worldsim COMMAND [key=value ...]   (worldsim COMMAND --help lists its keys)", "",
             "A learned world simulator you can step like a game.", "", "commands:"]
    for name, cmd in COMMANDS.items():
        lines.append(f"  {name:<8} {cmd.help}")
        if name == "dream":
            lines.append(f"  {'train':<8} train the autoencoder (train ae), the world model (train world), its "
                         "reward/end model (train reward) or a pixel baseline (train pixel)")
            lines.append(f"  {'agent':<8} train a PPO agent (agent train) or measure one (agent eval)")
    return "\n".join(lines)


def command_help(name: str, cmd: Command) -> str:
    from worldsim.config import describe, recipes

    text = f"usage: worldsim {name} {cmd.usage}\n\n{cmd.help}\n\nsettings (key=default):\n{describe(cmd.config())}"
    folder = cmd.recipes or name
    if recipes(folder):
        text += (f"\n\nrecipes (experiment=NAME, from configs/{folder}/experiment/; the keys given with it "
                 f"override it):\n  " + ", ".join(recipes(folder)))
    return text


def did_you_mean(args: list[str]) -> str | None:
    """A message for flags typed by habit (`--out x`, `--out=x`, `--no-real`, `--quick`), naming the key=value."""
    for i, arg in enumerate(args):
        if not FLAG.match(arg) or arg in HELP:
            continue
        key = arg.lstrip("-").replace("-", "_")
        if "=" in key:
            guess = key
        elif key.startswith("no_"):
            guess = f"{key[3:]}=false"
        elif i + 1 < len(args) and not FLAG.match(args[i + 1]) and "=" not in args[i + 1]:
            guess = f"{key}={args[i + 1]}"
        else:
            guess = f"{key}=true"
        return f"settings are key=value: did you mean {guess}? (got {arg!r})"
    return None


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in HELP:
        print(usage())
        return 0 if args else 2
    name, *rest = args
    if name in GROUPS:
        word, group = GROUPS[name]
        if not rest or rest[0] in HELP:
            print(f"usage: worldsim {name} {word} [key=value ...]   (worldsim {name} {word} --help lists its keys)"
                  f"\n\n{word.lower()}s:\n" + "\n".join(f"  {task:<6} {cmd.help}" for task, cmd in group.items()))
            return 0 if rest else 2
        task, *rest = rest
        if task not in group:
            print(f"worldsim {name}: the {word.lower()} comes first, one of {list(group)} (then key=value settings), "
                  f"got {task!r}", file=sys.stderr)
            return 2
        name, cmd = f"{name} {task}", group[task]
    elif name in COMMANDS:
        cmd = COMMANDS[name]
    else:
        print(f"worldsim: no command {name!r}; expected one of {[*COMMANDS, *GROUPS]} (worldsim --help)",
              file=sys.stderr)
        return 2
    if any(a in HELP for a in rest):
        print(command_help(name, cmd))
        return 0
    hint = did_you_mean(rest)
    if hint:
        print(f"worldsim {name}: {hint}", file=sys.stderr)
        return 2
    try:
        from worldsim.config import parse_overrides

        if name in ("curves", "scaling"):  # the documented exceptions: plain-argument runs and policy
            rest = _positional_runs(rest)
        elif name == "agent eval":
            rest = _positional(rest, "policy")
        cfg = parse_overrides(cmd.config(), rest, cmd.recipes or name)
        return cmd.run(cfg)
    except KeyboardInterrupt as err:
        print(f"\nworldsim {name}: {err or 'interrupted'}", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, ImportError) as err:  # bad input: a clear message, not a traceback
        print(f"worldsim {name}: error: {err}", file=sys.stderr)
        return 2


def _positional(args: list[str], key: str) -> list[str]:
    plain = [a for a in args if "=" not in a]
    if not plain:
        return args
    if len(plain) > 1 or any(a.startswith(f"{key}=") for a in args):
        raise ValueError(f"{key} given {'twice' if len(plain) == 1 else f'{len(plain)} times'}: {plain}; give one")
    quoted = "'" + plain[0].replace("\\", "\\\\").replace("'", "\\'") + "'"
    return [a for a in args if "=" in a] + [f"{key}={quoted}"]


def _positional_runs(args: list[str]) -> list[str]:
    runs = [a for a in args if "=" not in a]
    if not runs:
        return args
    if any(a.startswith("runs=") for a in args):
        raise ValueError(f"runs given twice, as runs=[...] and as {runs}: give one")
    quoted = ",".join("'" + r.replace("\\", "\\\\").replace("'", "\\'") + "'" for r in runs)
    return [a for a in args if "=" in a] + [f"runs=[{quoted}]"]


if __name__ == "__main__":
    sys.exit(main())
