"""`worldsim events`: one step after each kind of thing a player does, how much of what changed does the model get
right? Writes events.json and events.md.

An agent (the explorer by default, with its forage and tinker plans on, so every kind turns up) plays the real Craft2D
in worlds of its own; before each step its last `context` frames and actions are a context, the model makes the next
frame from them (teacher-forced: one step, the real history), and the engine's frame is the truth. Steps are sorted by
what the engine did: what the player mined or placed and with which action (apart when the player dropped in the same
step), a move, or nothing (a still step). Per kind, scores over the decoded cells (`worldsim.envs.craft2d.decoder`):
the share of the cells the step changed that the model gets right (copying the last frame gets none of them), the
share of them it kept as they were (a model that ignores the change keeps them all; one that draws it wrong keeps
few), and the share of all cells.

The probes ask the same question of hand-built scenarios after a short warm-up (causality, physics); this asks it of
ordinary play with a full context, so a low probe score can be told apart: a law the model has not learnt (low
here too) from a situation it has not seen (high here, low in the probe).
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from worldsim.config import check, check_guidance
from worldsim.io import write_results

WORK_PLANS = {"forage": 4.0, "tinker": 4.0}  # the explorer's plans that change the world in place, on beside its own
AGENTS = ("explorer", "random", "mixture")


@dataclass(frozen=True)
class EventsConfig:
    checkpoint: str | None = field(default=None, metadata={"help": "world model (default: the shipped one)"})
    agent: str = field(default="explorer", metadata={"help": "who plays: explorer | random | mixture"})
    agent_options: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "keyword arguments of the agent (default for the explorer: its forage and tinker plans on)"})
    env_kwargs: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "keyword arguments of Craft2D-v0 (e.g. env_kwargs.start_inventory={dirt:20}: blocks in hand)"})
    episodes: int = field(default=16, metadata={"help": "episodes played, each in a world of its own"})
    steps: int = field(default=500, metadata={"help": "steps an episode at most"})
    per_kind: int = field(default=64, metadata={"help": "steps scored of each kind at most (the first ones met)"})
    context: int = field(default=16, metadata={"help": "real frames before the step the model is shown"})
    seed: int = field(default=20_000, metadata={"help": "episode e plays world seed + e (the recipe collects "
                                                           "from derived seeds: other worlds)"})
    denoise_steps: int | None = field(default=None, metadata={"help": "solver steps (default: the checkpoint's)"})
    action_guidance: float | None = field(default=None, metadata={
        "help": "classifier-free guidance on the action, a scale >= 0 (default: the checkpoint's; 1: none)"})
    history_guidance: float | None = field(default=None, metadata={
        "help": "guidance on the history older than the latest history_window frames, a scale >= 0 (default: the "
                "checkpoint's; 1: none)"})
    history_window: int | None = field(default=None, metadata={
        "help": "the latest cached frames the pass history guidance contrasts with sees (default: the checkpoint's)"})
    out: str = field(default="events", metadata={"help": "directory of events.json and events.md"})

    def __post_init__(self):
        check(self.episodes >= 1 and self.steps >= 2, "episodes, steps", (self.episodes, self.steps),
              "episodes >= 1 and steps >= 2")
        check(self.per_kind >= 1, "per_kind", self.per_kind, "steps >= 1")
        check(self.context >= 1, "context", self.context, "frames >= 1")
        check_guidance(self)
        check(self.agent in AGENTS, "agent", self.agent, f"one of {AGENTS} (an agent that plays by itself)")


def play(cfg: EventsConfig, env_id: str = "worldsim/Craft2D-v0") -> dict[str, list[tuple]]:
    """Play the agent in the engine; per kind, the first `per_kind` (frames, actions, action, next frame) found."""
    import gymnasium as gym

    import worldsim.envs  # noqa: F401  (registers the envs)
    from worldsim.agents.base import make_agent
    from worldsim.agents.explorer import PLAN_WEIGHTS
    from worldsim.envs.craft2d.tiles import ACTION_MEANINGS

    options = dict(cfg.agent_options)
    if cfg.agent == "explorer" and not options:
        options = {"plan_weights": {**PLAN_WEIGHTS, **WORK_PLANS}}
    env = gym.make(env_id, **cfg.env_kwargs)
    agent = make_agent(cfg.agent, env.action_space, env_id, **options)
    found: dict[str, list[tuple]] = defaultdict(list)
    for e in range(cfg.episodes):
        obs, info = env.reset(seed=cfg.seed + e)
        agent.reset(cfg.seed + e)
        frames, actions = deque([obs], maxlen=cfg.context), deque([-1], maxlen=cfg.context)  # the last `context`
        for _ in range(cfg.steps):
            a = int(agent.act(obs, info))
            pos = info["player_pos"]
            obs, _, terminated, truncated, info = env.step(a)
            game = env.unwrapped.game
            kind = _kind(info, pos, ACTION_MEANINGS[a],
                         None if game.acted_at is None else bool(game.above_ground(game.acted_at)))
            if len(frames) >= cfg.context and len(found[kind]) < cfg.per_kind:
                found[kind].append((np.stack(frames), np.array(actions), a, obs))
            frames.append(obs)
            actions.append(a)
            if terminated or truncated:
                break
    env.close()
    return dict(found)


def _kind(info: dict, before: tuple[int, int], action: str, above_ground: bool | None = None) -> str:
    """What the step did: 'mined (mine_up)', 'placed (place)', either with ', falling' when the player moved in the
    same step (mining mid-jump, then dropping: the view scrolls, and its cells outnumber the mined one) and with where
    the tile was (`above_ground`: ', above ground', where a mined block leaves sky, or ', in the ground', where it
    leaves a cave wall; nothing where unknown), 'took fall' damage, 'fell into' lava, 'moved' or 'still'."""
    moved = tuple(info["player_pos"]) != tuple(before)
    for event in info["events"]:
        words = event.split()
        if words[0] == "player" and words[1] in ("mined", "placed"):
            where = "" if above_ground is None else ", above ground" if above_ground else ", in the ground"
            return f"{words[1]} ({action})" + (", falling" if moved else "") + where
        if words[0] == "player":
            return " ".join(words[1:3])
    return "moved" if moved else "still"


def score(predictor, found: dict[str, list[tuple]]) -> dict[str, dict]:
    """Per kind: steps, changed cells, the share of changed cells the model gets right and the share it keeps as the
    last frame had them, and the share of all cells right; the changed cells also apart, in the world and in the HUD
    (its last row: the inventory's counts)."""
    from worldsim.envs.craft2d.decoder import cells_right, decode_cells
    from worldsim.probes.predictors import Context

    out = {}
    for kind in sorted(found, key=lambda k: -len(found[k])):
        items = found[kind]
        contexts = [Context(f, a, None) for f, a, _, _ in items]  # a world model needs no engine state
        actions = np.array([[a] for _, _, a, _ in items], np.int64)
        made = predictor.predict(contexts, actions, np.arange(len(items))).frames[:, 0]
        truth, _ = decode_cells(np.stack([o for *_, o in items]))
        last, _ = decode_cells(np.stack([f[-1] for f, *_ in items]))
        cells, distance = decode_cells(made)
        right = cells_right(cells, distance, truth)
        kept = cells_right(cells, distance, last)  # the last frame's sprite, clearly drawn: the change ignored
        changed = truth != last
        hud = np.zeros_like(changed)
        hud[:, -1] = True
        out[kind] = {"steps": len(items), "changed_cells": int(changed.sum()), "changed_right": _share(right, changed),
                     "world_changed": int((changed & ~hud).sum()), "world_right": _share(right, changed & ~hud),
                     "hud_changed": int((changed & hud).sum()), "hud_right": _share(right, changed & hud),
                     "changed_kept": _share(kept, changed), "world_kept": _share(kept, changed & ~hud),
                     "hud_kept": _share(kept, changed & hud), "all_right": float(right.mean())}
    return out


def _share(right: np.ndarray, where: np.ndarray) -> float | None:
    return float(right[where].mean()) if where.any() else None


def run(cfg: EventsConfig) -> dict:
    from worldsim.probes.predictors import load_model
    from worldsim.probes.scenarios import DEFAULT_VIEW

    predictor, meta = load_model(cfg.checkpoint, DEFAULT_VIEW, denoise_steps=cfg.denoise_steps,
                                 action_guidance=cfg.action_guidance, history_guidance=cfg.history_guidance,
                                 history_window=cfg.history_window, device="cpu")
    if meta["context"] - 1 < cfg.context:
        print(f"context={cfg.context}: the model's window holds {meta['context'] - 1} frames beside the new one; "
              "the older ones leave it at once")
    results = {"checkpoint": meta["checkpoint"], "denoise_steps": meta["denoise_steps"],
               "action_guidance": meta["action_guidance"], "history_guidance": meta["history_guidance"],
               "history_window": meta["history_window"], "config": asdict(cfg),
               "kinds": score(predictor, play(cfg))}
    text = report(results)
    write_results(cfg.out, "events", results, text)
    print(text)
    return results


def report(results: dict) -> str:
    def pct(x):
        return "-" if x is None else f"{x:.1%}"

    lines = [f"# One step after each kind of event: {results['checkpoint']}", "",
             "| what the step did | steps | cells it changed | of those, right | of those, kept as before | "
             "in the world: changed, right | in the HUD: changed, right | all cells right |",
             "|---|---|---|---|---|---|---|---|"]
    for kind, row in results["kinds"].items():
        lines.append(f"| {kind} | {row['steps']} | {row['changed_cells']} | {pct(row['changed_right'])} | "
                     f"{pct(row['changed_kept'])} | "
                     f"{row['world_changed']}, {pct(row['world_right'])} | {row['hud_changed']}, "
                     f"{pct(row['hud_right'])} | {pct(row['all_right'])} |")
    return "\n".join(lines) + "\n"
