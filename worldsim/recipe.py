"""`worldsim recipe`: the shipped Craft2D world model from nothing, one command, every stage resuming where it stopped.

    worldsim recipe                                     # collect, autoencoder, world model, fine-tunes, ship
    worldsim recipe stages=[world,world_ft,ship]            # some stages (their inputs must be there)
    worldsim recipe "collect=['steps=20000']" "world=['optim.steps=500']"     # extra settings of a stage

Each stage is the command the README lists, with its recipe from configs/ (`experiment=...`) and the stage's extra
key=value settings on top; the stages are chained by their settings, not by fixed paths: the world model trains on the
dataset collect wrote and the autoencoder train ae wrote, the fine-tune starts from the world model's checkpoint, the
captions fine-tune (on its own fresh data) from the fine-tune's, the views fine-tune (the captions data and two more
frame sizes, 96x64 and 64x96) from the captions model's, the build fine-tune (those three datasets, data of mining and
placing ahead, collect_work, and of building on the surface with blocks in hand, collect_build) from the views
model's, and ship copies its checkpoint (checked whole by load_world) to `ship=`. The world's own reward and
termination heads pay in the shipped model: a reward/end model (`worldsim train reward`) on the views model paid for
fewer of the reward probes' events than the build model's heads (README, "Building on the surface"), so no stage
trains one. Every stage resumes: collect continues its dataset, a training run its run directory, and a stage that is
done does nothing, so after a crash or Ctrl-C the same command carries on.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from worldsim.config import check

STAGES = ("collect", "ae", "world", "world_ft", "collect_text", "world_text", "collect_views", "world_views",
          "collect_work", "collect_build", "world_build", "ship")
RECIPES = {"collect": ("collect", "craft2d"), "ae": ("train_ae", "craft2d"), "world": ("train_world", "craft2d_s"),
           "world_ft": ("train_world", "craft2d_s_ft"), "collect_text": ("collect", "craft2d_text"),
           "world_text": ("train_world", "craft2d_s_text"), "world_views": ("train_world", "craft2d_s_views"),
           "collect_work": ("collect", "craft2d_work"), "collect_build": ("collect", "craft2d_build"),
           "world_build": ("train_world", "craft2d_s_build")}
VIEWS = ("craft2d_96x64", "craft2d_64x96")  # collect_views: one dataset of each (configs/collect/experiment/)


def _shipped() -> str:
    from worldsim.checkpoint import default_checkpoint

    return str(default_checkpoint())


@dataclass(frozen=True)
class RecipeConfig:
    stages: list[str] = field(default_factory=lambda: list(STAGES), metadata={
        "help": f"the stages to run, in order, from {list(STAGES)}"})
    collect: list[str] = field(default_factory=list, metadata={"help": "extra key=value settings of `worldsim "
                                                                      "collect experiment=craft2d`"})
    ae: list[str] = field(default_factory=list, metadata={"help": "extra settings of `worldsim train ae "
                                                                 "experiment=craft2d`"})
    world: list[str] = field(default_factory=list, metadata={"help": "extra settings of `worldsim train world "
                                                                    "experiment=craft2d_s`"})
    world_ft: list[str] = field(default_factory=list, metadata={"help": "extra settings of `worldsim train world "
                                                                       "experiment=craft2d_s_ft`"})
    collect_text: list[str] = field(default_factory=list, metadata={"help": "extra settings of `worldsim collect "
                                                                           "experiment=craft2d_text`"})
    world_text: list[str] = field(default_factory=list, metadata={"help": "extra settings of `worldsim train world "
                                                                         "experiment=craft2d_s_text`"})
    collect_views: list[str] = field(default_factory=list, metadata={
        "help": f"extra settings of `worldsim collect experiment=NAME`, for each NAME of {list(VIEWS)}, after its own "
                "(an out= here names the first's, and the second's gets a suffix)"})
    world_views: list[str] = field(default_factory=list, metadata={"help": "extra settings of `worldsim train world "
                                                                          "experiment=craft2d_s_views`"})
    collect_work: list[str] = field(default_factory=list, metadata={"help": "extra settings of `worldsim collect "
                                                                           "experiment=craft2d_work`"})
    collect_build: list[str] = field(default_factory=list, metadata={"help": "extra settings of `worldsim collect "
                                                                            "experiment=craft2d_build`"})
    world_build: list[str] = field(default_factory=list, metadata={"help": "extra settings of `worldsim train world "
                                                                          "experiment=craft2d_s_build`"})
    ship: str = field(default_factory=_shipped, metadata={"help": "where the last fine-tune's checkpoint is copied "
                                                                  "(default: the package's shipped model)"})

    def __post_init__(self):
        unknown = [s for s in self.stages if s not in STAGES]
        check(not unknown and len(self.stages) > 0, "stages", self.stages, f"some of {list(STAGES)}")
        check(Path(self.ship).suffix == ".safetensors", "ship", self.ship, "a .safetensors file")


def configs(cfg: RecipeConfig) -> dict:
    """Every stage's config, parsed before any stage runs, so a bad setting of the last stage stops the first."""
    from worldsim.config import parse_overrides
    from worldsim.data.collect import CollectConfig
    from worldsim.train.autoencoder import TrainAEConfig
    from worldsim.train.world import TrainWorldConfig

    collect = parse_overrides(CollectConfig, [f"experiment={RECIPES['collect'][1]}", *cfg.collect], "collect")
    ae = parse_overrides(TrainAEConfig, [f"experiment={RECIPES['ae'][1]}", f"data={collect.out}", *cfg.ae], "train_ae")
    chained = [f"data={collect.out}", f"ae={Path(ae.loop.out) / 'last.safetensors'}"]
    world = parse_overrides(TrainWorldConfig, [f"experiment={RECIPES['world'][1]}", *chained, *cfg.world],
                            "train_world")
    world_ft = parse_overrides(TrainWorldConfig, [f"experiment={RECIPES['world_ft'][1]}", *chained,
                                                  f"init={Path(world.loop.out) / 'last.safetensors'}", *cfg.world_ft],
                               "train_world")
    collect_text = parse_overrides(CollectConfig, [f"experiment={RECIPES['collect_text'][1]}", *cfg.collect_text],
                                   "collect")
    world_text = parse_overrides(TrainWorldConfig, [f"experiment={RECIPES['world_text'][1]}",
                                                    f"data={collect_text.out}", chained[1],
                                                    f"init={Path(world_ft.loop.out) / 'last.safetensors'}",
                                                    *cfg.world_text], "train_world")
    views = [parse_overrides(CollectConfig, [f"experiment={name}", *_suffixed(cfg.collect_views, i)], "collect")
             for i, name in enumerate(VIEWS)]
    world_views = parse_overrides(TrainWorldConfig, [f"experiment={RECIPES['world_views'][1]}",
                                                     f"data={collect_text.out}", chained[1],
                                                     _views(v.out for v in views),
                                                     f"init={Path(world_text.loop.out) / 'last.safetensors'}",
                                                     *cfg.world_views], "train_world")
    collect_work = parse_overrides(CollectConfig, [f"experiment={RECIPES['collect_work'][1]}", *cfg.collect_work],
                                   "collect")
    collect_build = parse_overrides(CollectConfig, [f"experiment={RECIPES['collect_build'][1]}", *cfg.collect_build],
                                    "collect")
    world_build = parse_overrides(TrainWorldConfig, [f"experiment={RECIPES['world_build'][1]}",
                                                     f"data={collect_text.out}", chained[1],
                                                     _views([*(v.out for v in views), collect_work.out,
                                                             collect_build.out]),
                                                     f"init={Path(world_views.loop.out) / 'last.safetensors'}",
                                                     *cfg.world_build], "train_world")
    return {"collect": collect, "ae": ae, "world": world, "world_ft": world_ft, "collect_text": collect_text,
            "world_text": world_text, "collect_views": views, "world_views": world_views, "collect_work": collect_work,
            "collect_build": collect_build, "world_build": world_build}


def _views(dirs) -> str:
    """The `views=` setting of a world stage: its datasets beyond `data=`, quoted for Hydra."""
    return "views=[" + ",".join(f"'{d}'" for d in dirs) + "]"


def _suffixed(settings: list[str], i: int) -> list[str]:
    """A stage's settings for its i-th dataset: an out= gets a suffix after the first, so two never share one."""
    return [f"{s}_{i}" if s.startswith("out=") and i else s for s in settings]


def run(cfg: RecipeConfig) -> Path:
    """Run the chosen stages in order; returns the shipped checkpoint's path."""
    from worldsim.checkpoint import load_world
    from worldsim.data.collect import collect
    from worldsim.io import atomic_path
    from worldsim.train import autoencoder, world

    stages = configs(cfg)
    runners = {"collect": collect, "ae": autoencoder.run, "world": world.run, "world_ft": world.run,
               "collect_text": collect, "world_text": world.run,
               "collect_views": lambda views: [collect(v) for v in views], "world_views": world.run,
               "collect_work": collect, "collect_build": collect, "world_build": world.run}
    for name in STAGES:
        if name not in cfg.stages:
            continue
        print(f"== recipe stage {name}")
        if name != "ship":
            runners[name](stages[name])
            continue
        source = Path(stages["world_build"].loop.out) / "last.safetensors"
        load_world(source)  # refused here, with the field named, rather than shipped
        with atomic_path(cfg.ship) as tmp:
            shutil.copyfile(source, tmp)
        print(f"shipped {source} as {cfg.ship}")
    return Path(cfg.ship)
