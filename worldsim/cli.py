"""The `worldsim` command.

    worldsim play [--dream|--real|--ghost] [--checkpoint CKPT] [--seed N] [--scale 8]   play with the keyboard
    worldsim collect out=DIR [env=ID agent=NAME steps=N workers=K]   trajectories into a dataset
    worldsim export data=DIR id=NS/NAME-v0 / import id=NS/NAME-v0 out=DIR       Minari interchange
    worldsim bench [only=[engine,loader] steps=20000 out=.]  speed table, written to bench.json
    worldsim dream [--checkpoint CKPT] [--steps 300] [--agent explorer] [--out rollout.gif]   headless rollout
    worldsim probe [checkpoint=CKPT suite=all seeds=4 out=probes] [--quick]   probes.json and probes.md
    worldsim curves RUN [RUN...] [--out curves.png]   training curves of runs, chained

Each subcommand parses its flags into a frozen dataclass and hands it to the module that does the work. The
key=value ones take Hydra overrides onto that dataclass and, where configs/<command>/experiment/ has recipes,
`experiment=NAME`; `--help` lists both.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def _positive(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: expected an integer >= 1")
    return n


def _play(ns: argparse.Namespace) -> int:
    from worldsim.envs.dream import default_checkpoint
    from worldsim.play import PlayArgs, play

    mode = ns.mode
    if mode is None:  # the dream when there is one to play, else the real game
        mode = "dream" if ns.checkpoint or default_checkpoint().exists() else "real"
        if mode == "real":
            print(f"the shipped world model is missing from this install ({default_checkpoint()}): playing the real "
                  "game (--checkpoint CKPT for a dream)")
    view_w, view_h = ns.view
    result = play(PlayArgs(mode=mode, checkpoint=ns.checkpoint, denoise_steps=ns.denoise_steps, image=ns.image,
                           seed=ns.seed, scale=ns.scale, fps=ns.fps, max_ticks=ns.max_ticks, view_width=view_w,
                           view_height=view_h, screenshot=ns.screenshot, save_seconds=ns.save_seconds))
    line = f"played {result.ticks} ticks over {result.episodes} episode(s), total reward {result.total_reward:g}"
    if result.agreement:
        line += f", cells agreeing with the real game {np.mean(result.agreement):.1%} on average"
    print(line)
    return 0


def _dream(ns: argparse.Namespace) -> int:
    from worldsim.rollout import DreamArgs, describe, run

    summary = run(DreamArgs(checkpoint=ns.checkpoint, steps=ns.steps, agent=ns.agent, out=ns.out, seed=ns.seed,
                            denoise_steps=ns.denoise_steps, scale=ns.scale, fps=ns.fps, real=not ns.no_real))
    print(describe(summary))
    return 0


def _curves(ns: argparse.Namespace) -> int:
    from worldsim.train.curves import main as curves

    print(f"wrote {curves(ns.runs, ns.out, ns.title)}")
    return 0


def _bench(ns: argparse.Namespace) -> int:
    from worldsim.bench import BenchArgs, run

    return _keyvalue_command(BenchArgs, run, None, "bench")(ns)


def _probe(ns: argparse.Namespace) -> int:
    from worldsim.probes.runner import ProbeConfig, run

    if ns.quick:
        ns.overrides = [*ns.overrides, "quick=true"]
    return _keyvalue_command(ProbeConfig, run, None, "probe")(ns)


def _collect(ns: argparse.Namespace) -> int:
    from worldsim.data.collect import CollectConfig, collect

    return _keyvalue_command(CollectConfig, collect, None, "collect")(ns)


TRAIN_TASKS = ("ae", "world")


def _train(ns: argparse.Namespace) -> int:
    task, *rest = ns.overrides or [None]
    if task not in TRAIN_TASKS:
        print(f"worldsim train: expected a task first, one of {TRAIN_TASKS} (then key=value settings; "
              f"`worldsim train ae --help` lists them), got {task!r}", file=sys.stderr)
        return 2
    ns.overrides = rest
    if task == "ae":
        from worldsim.train.autoencoder import TrainAEConfig as config, run
    else:
        from worldsim.train.world import TrainWorldConfig as config, run
    return _keyvalue_command(config, run, None, f"train_{task}")(ns)


def _keyvalue_command(config_cls, run, done: str | None, name: str):
    """A subcommand taking key=value overrides onto `config_cls` (and `experiment=NAME`, a recipe from
    configs/<name>/experiment/); --help lists the keys and the recipes."""

    def command(ns: argparse.Namespace) -> int:
        from worldsim.config import describe, parse_overrides, recipes

        if ns.help_config:
            found = recipes(name)
            extra = f"\n  experiment=NAME\n      a recipe from configs/{name}/experiment/: {found}" if found else ""
            print(f"worldsim {name.replace('_', ' ')} key=value ...\n\n" + describe(config_cls) + extra)
            return 0
        result = run(parse_overrides(config_cls, ns.overrides, name))
        if done:
            print(done.format(result))
        return 0

    return command


def _export(ns: argparse.Namespace) -> int:
    from worldsim.data.minari_io import ExportConfig, export_minari

    return _keyvalue_command(ExportConfig, export_minari, "exported {} episodes to Minari", "export")(ns)


def _import(ns: argparse.Namespace) -> int:
    from worldsim.data.minari_io import ImportConfig, import_minari

    return _keyvalue_command(ImportConfig, import_minari, "imported {} episodes from Minari", "import")(ns)


def _add_keyvalue(sub, name: str, help: str, usage: str, func) -> None:
    p = sub.add_parser(name, help=help, add_help=False, description=f"worldsim {name} {usage}; --help lists every key")
    p.add_argument("overrides", nargs="*", help="key=value settings")
    p.add_argument("--help", "-h", dest="help_config", action="store_true", help="list every key=value")
    p.set_defaults(func=func)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="worldsim", description="A learned world simulator you can step like a game.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    play = sub.add_parser("play", help="play in a pygame window",
                          description="Play the learned world or Craft2D with the keyboard: arrows/WASD move, "
                                      "W/up/space jump, J mine, U mine up, S/down mine down, K place, L place down, "
                                      "Q/tab next block, R restart, P pause, Ctrl+S save the last seconds, ESC quit.")
    modes = play.add_mutually_exclusive_group()
    modes.add_argument("--dream", dest="mode", action="store_const", const="dream",
                       help="play the world model (the default when there is a checkpoint)")
    modes.add_argument("--real", dest="mode", action="store_const", const="real", help="play the real game, Craft2D")
    modes.add_argument("--ghost", dest="mode", action="store_const", const="ghost",
                       help="the dream and the real game side by side, same start, same keys")
    play.add_argument("--checkpoint", default=None, help="world model for --dream/--ghost (default: the shipped one)")
    play.add_argument("--denoise-steps", type=_positive, default=None, help="solver steps a frame (default: the "
                                                                               "checkpoint's)")
    play.add_argument("--image", default=None, metavar="PNG", help="--dream: start from this picture")
    play.add_argument("--save-seconds", type=float, default=10.0, help="Ctrl+S saves this many seconds (default 10)")
    play.add_argument("--seed", type=int, default=None, help="world seed (default: a new world each run)")
    play.add_argument("--scale", type=_positive, default=8, help="window pixels per game pixel (default 8)")
    play.add_argument("--fps", type=float, default=10.0, help="game ticks per second (default 10)")
    play.add_argument("--view", type=_positive, nargs=2, default=(8, 8), metavar=("W", "H"),
                      help="view size in tiles, HUD row included (default 8 8: a 64x64 frame)")
    play.add_argument("--max-ticks", type=_positive, default=None, help="stop after this many ticks")
    play.add_argument("--screenshot", default=None, metavar="PNG", help="save the window to PNG when play ends")
    play.set_defaults(func=_play)

    dream = sub.add_parser("dream", help="roll a world model out headless to a GIF or MP4 (beside the real game)",
                           description="Roll a world model out with an agent and write the frames to a GIF or MP4; "
                                       "for Craft2D checkpoints the real game runs beside it with the same actions.")
    dream.add_argument("--checkpoint", default=None, help="world-model checkpoint (default: the shipped one)")
    dream.add_argument("--steps", type=_positive, default=300, help="steps to roll out (default 300)")
    dream.add_argument("--agent", default="explorer", help="agent choosing the actions (default explorer; random "
                                                           "for checkpoints of other games)")
    dream.add_argument("--out", default="rollout.gif", help="output .gif or .mp4 (default rollout.gif)")
    dream.add_argument("--seed", type=int, default=0, help="seed of the world, the agent and the sampling noise")
    dream.add_argument("--denoise-steps", type=_positive, default=None, help="solver steps a frame (default: the "
                                                                                "checkpoint's)")
    dream.add_argument("--scale", type=_positive, default=4, help="output pixels per frame pixel (default 4)")
    dream.add_argument("--fps", type=float, default=None, help="frames per second of the output (default: the "
                                                               "checkpoint's)")
    dream.add_argument("--no-real", action="store_true", help="the dream alone, without the real game beside it")
    dream.set_defaults(func=_dream)

    _add_keyvalue(sub, "collect", "collect trajectories from a Gymnasium env into a dataset",
                  "out=DIR [env=ID agent=NAME steps=N workers=K ...]", _collect)
    _add_keyvalue(sub, "train", "train the autoencoder or the world model (resumes a run in loop.out)",
                  "ae|world data=DIR [optim.steps=N loop.out=DIR ...]", _train)
    curves = sub.add_parser("curves", help="plot training runs' curves to a PNG",
                            description="Plot the training loss and held-out evaluations of runs (chained end to end: "
                                        "a fine-tune continues its parent) to one PNG.")
    curves.add_argument("runs", nargs="+", help="run directories (loop.out) or log.jsonl files, in training order")
    curves.add_argument("--out", default="curves.png", help="output .png (default curves.png)")
    curves.add_argument("--title", default="", help="title of the loss panel")
    curves.set_defaults(func=_curves)

    _add_keyvalue(sub, "export", "export a dataset to Minari", "data=DIR id=NAMESPACE/NAME-v0", _export)
    _add_keyvalue(sub, "import", "import a Minari dataset", "id=NAMESPACE/NAME-v0 out=DIR", _import)

    _add_keyvalue(sub, "bench", "measure speed; prints a table and writes bench.json",
                  "[only=[engine,loader] steps=20000 repeats=5 data=DIR out=.]", _bench)
    _add_keyvalue(sub, "probe", "ask a world model what the real game knows; writes probes.json and probes.md",
                  "[checkpoint=CKPT] [suite=all|permanence+causality...] [seeds=4] [out=DIR] [--quick]", _probe)
    probe = sub.choices["probe"]
    probe.add_argument("--quick", action="store_true", help="a reduced suite, for tests (seconds)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns, extra = parser.parse_known_args(argv)
    if extra and hasattr(ns, "overrides") and not any(e.startswith("-") for e in extra):
        ns.overrides = [*ns.overrides, *extra]  # key=value settings on both sides of a flag (`a=1 --quick b=2`)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return ns.func(ns)
    except KeyboardInterrupt as err:
        print(f"\nworldsim {ns.command}: {err or 'interrupted'}", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, ImportError) as err:  # bad input: a clear message, not a traceback
        print(f"worldsim {ns.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
