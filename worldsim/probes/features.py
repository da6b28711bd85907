"""`worldsim features`: the Sora feature set of a Craft2D world model, measured. Writes features.json and features.md.

- **prompt adherence** (worldsim.probes.adherence): first frames dreamt from prompts, decoded (time of day, biome,
  animals) against what each prompt asked, on the probes' 0..1 scale between unconditioned samples (0) and engine
  renders of the same prompts (1);
- **restyle**, **connect**, **extend backward** (worldsim.probes.editing): edits of clips the real game plays.
`prompts.png` shows the model's first frame for every time of day x biome of the grid beside the engine's render.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from worldsim.config import check
from worldsim.io import write_results


@dataclass(frozen=True)
class FeaturesConfig:
    checkpoint: str | None = field(default=None, metadata={"help": "world model (default: the shipped one)"})
    seeds: int = field(default=4, metadata={"help": "sampling seeds of the prompt-adherence grid"})
    clips: int = field(default=8, metadata={"help": "Craft2D clips restyled and connected"})
    length: int = field(default=16, metadata={"help": "frames a clip"})
    guidance: float = field(default=10.0, metadata={"help": "classifier-free guidance of prompts and restyles"})
    strength: float = field(default=0.8, metadata={"help": "restyle noise level"})
    transition: int = field(default=8, metadata={"help": "frames connect and extend make"})
    only: list[str] = field(default_factory=lambda: ["adherence", "starts", "restyle", "connect"], metadata={
        "help": "which measures to run: adherence, starts (image and video starts), restyle, connect (with extend)"})
    out: str = field(default="features", metadata={"help": "directory of features.json and features.md"})

    def __post_init__(self):
        check(self.seeds >= 1 and self.clips >= 2 and self.length >= 2, "seeds, clips, length",
              (self.seeds, self.clips, self.length), "seeds >= 1, clips >= 2, length >= 2")
        check(0 <= self.guidance <= 100, "guidance", self.guidance, "a scale in [0, 100]")
        check(0 <= self.strength <= 1, "strength", self.strength, "a noise level in [0, 1]")
        check(self.transition >= 1, "transition", self.transition, "frames >= 1")
        known = ("adherence", "starts", "restyle", "connect")
        check(bool(self.only) and set(self.only) <= set(known), "only", list(self.only), f"a list among {known}")


def run(cfg: FeaturesConfig) -> dict:
    from worldsim.envs.craft2d import is_craft2d
    from worldsim.envs.dream import PROMPT_STEPS
    from worldsim.probes.editing import craft2d_clips, score_connect, score_restyle, score_starts
    from worldsim.simulator import load_simulator

    sim, path = load_simulator(cfg.checkpoint, None, None, "cpu", batch_size=1)
    if not is_craft2d(sim.metadata.get("env")):
        raise ValueError(f"worldsim features decodes Craft2D frames, and {path} was trained on "
                         f"{sim.metadata.get('env')!r}")
    if sim.dit.text is None and ("adherence" in cfg.only or "restyle" in cfg.only):
        raise ValueError(f"{path} was trained without captions: it cannot follow prompts; run only=[starts,connect]")
    results: dict = {"checkpoint": str(path), "config": asdict(cfg)}
    if "adherence" in cfg.only:
        from worldsim.probes.adherence import score_adherence

        def generate(captions: list[str], seed: int):
            return sim.imagine(captions, steps=PROMPT_STEPS, guidance=cfg.guidance, seed=seed * 100_003)

        results["adherence"] = score_adherence(generate, seeds=cfg.seeds)
        sheet(generate, Path(cfg.out) / "prompts.png")
    clips = craft2d_clips(cfg.clips, cfg.length, seed=10_000) if set(cfg.only) - {"adherence"} else []
    if "starts" in cfg.only:
        results["starts"] = score_starts(sim, clips)
    if "restyle" in cfg.only:
        results["restyle"] = score_restyle(sim, clips, cfg.strength, cfg.guidance)
    if "connect" in cfg.only:
        results["connect"] = score_connect(sim, clips, cfg.transition)
    text = report(results)
    write_results(cfg.out, "features", results, text)
    print(text)
    return results


def sheet(generate, path: Path) -> Path:
    """A contact sheet of the phase x biome prompts: the model's first frame (seed 0) beside the engine's render, a
    row per phase."""
    from worldsim.media import grid, side_by_side, upscale, write_png
    from worldsim.probes.adherence import DEFAULT_PROMPTS, engine_frame
    from worldsim.prompt import PHASES, expand_prompt

    grid_prompts = [(p, e) for p in DEFAULT_PROMPTS if (e := expand_prompt(p)).phase is not None]  # phase by phase
    prompts = [p for p, _ in grid_prompts]
    n_biomes = sum(e.phase == PHASES[0] for _, e in grid_prompts)
    model = generate([e.caption for _, e in grid_prompts], 0)
    pairs = [upscale(side_by_side([m, engine_frame(p, 0)]), 2) for m, p in zip(model, prompts)]
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_png(path, grid(pairs, n_biomes))


def report(results: dict) -> str:
    lines = [f"# Sora features of {results['checkpoint']}", ""]
    if "adherence" in results:
        lines += ["## Prompt adherence (0: unconditioned samples, 1: engine renders of the prompt)", "",
                  "| attribute | score | model | floor | ceiling |", "|---|---|---|---|---|"]
        for name, row in results["adherence"].items():
            if isinstance(row, dict) and "score" in row:
                lines.append(f"| {name} | {row['score']:.2f} | {row['model']:.2f} | {row['floor']:.2f} | "
                             f"{row['ceiling']:.2f} |")
        lines.append("")
    if "starts" in results:
        s = results["starts"]
        ks = sorted({int(k.split("_h")[1]) for k in s})
        lines += ["## Image and video starts in worlds the model never saw (cells right, k steps on)", "",
                  "| start | " + " | ".join(f"k={k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
        for name in ("image", "video"):
            lines.append(f"| {name} | " + " | ".join(f"{s[f'{name}_h{k}']:.1%}" if f"{name}_h{k}" in s else "-"
                                                   for k in ks) + " |")
        lines.append("")
    if "restyle" in results:
        r = results["restyle"]
        lines += ["## Restyle (time of day swapped, biome kept)", "", "| | frames at the asked time | cells kept |",
                  "|---|---|---|", f"| model | {r['changed']:.1%} | {r['kept']:.1%} |",
                  f"| input clip | {r['input_changed']:.1%} | 100.0% |", ""]
    if "connect" in results:
        c = results["connect"]
        lines += ["## Connect and extend backward", "", "| | last made frame: cells of the goal | made cells that "
                  "look like sprites |", "|---|---|---|",
                  f"| connect | {c['arrival']:.1%} | {c['valid']:.1%} |",
                  f"| extend backward | {c['extend_arrival']:.1%} | {c['extend_valid']:.1%} |",
                  f"| pixel cross-fade | {c['fade_arrival']:.1%} | {c['fade_valid']:.1%} |", ""]
    return "\n".join(lines)
