"""The seven probe families, each a function from a random generator to its probes.

Every scenario is drawn fresh from `rng`: biome, decorations, object, world seed, place in the world and time of day,
so the same `seed` gives the same suite and another seed another draw of it. `split="id"` stamps the patch into a
world the training data visited, in a biome whose tiles it uses; `split="ood"` into a world seed no training run has
seen, across a biome border that never occurs in generated worlds, at night.

At a view larger than the default 8x8 tiles (`Suite.view`), the walks that take something out of view grow by the
columns the view adds on the side it leaves by, so it is out of view as many steps as at the default view; a probe
keeps the default view's k in its name and params, and records the steps it walks as `walk` (consistency: each
leg's as `leg`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from worldsim.envs.craft2d.tiles import ENV_ID, Action
from worldsim.probes.scenarios import DEFAULT_VIEW, ORES, PALETTES, PLANTS, Patch, Probe, Run, View, place

(NOOP, LEFT, RIGHT, JUMP, JUMP_LEFT, JUMP_RIGHT, MINE, MINE_UP, MINE_DOWN, PLACE, PLACE_DOWN,
 NEXT_BLOCK) = (int(a) for a in Action)
WARMUP = (NOOP, NOOP, NOOP)  # three quiet steps: a context of four frames
BIOMES = tuple(PALETTES)
FAMILIES = ("permanence", "causality", "physics", "consistency", "control", "stability", "reward")


@dataclass(frozen=True)
class Suite:
    """How big the suite is (with the defaults `worldsim probe` takes about six minutes on a 2-core CPU for the S
    model at 2 solver steps), and which training run's worlds are in distribution."""

    permanence_k: tuple[int, ...] = (6, 12, 24, 48)  # steps walked away: from inside the context to well beyond
    ood: int = 2  # out-of-distribution probes per family, beside one in-distribution probe per scenario
    causality_checks: tuple[int, ...] = (1, 10, 50, 100)  # steps after the effect at which it must still be there
    causality_walk: int = 10  # then walk this far away and back
    consistency_k: tuple[int, ...] = (6, 12)  # leg lengths of the A->B->A and A->B->C->A walks
    control_repeat: int = 3  # each action is held this many steps
    stability_steps: int = 1000
    stability_every: int = 100  # score the rollout every this many steps
    reward_idle: int = 10  # quiet steps before, between and after the reward probes' events: where nothing pays
    idle_rows: int = 8  # worlds an idle agent waits in for the idle-return check
    idle_steps: int = 200  # steps it waits there, and the random player plays there
    collect_seed: int = 0  # `worldsim collect seed=` of the training data: its episodes' worlds are in distribution
    view: View = DEFAULT_VIEW  # the view every run is played at, by the truth, the ceiling, the floors and the model


def _biome(rng: np.random.Generator) -> str:
    return BIOMES[int(rng.integers(len(BIOMES)))]


def _probe(family: str, kind: str, split: str, i: int, runs, score_at, params: dict, **kw) -> Probe:
    return Probe(name=f"{family}/{kind}-{split}{i}", family=family, split=split, runs=tuple(runs),
                 score_at=tuple(score_at), params=params, **kw)


def _splits(n_id: int, n_ood: int):
    return [("id", i) for i in range(n_id)] + [("ood", i) for i in range(n_ood)]


# ---- 1. permanence -------------------------------------------------------------------------------------------------
PERMANENCE_OBJECTS = ("ore", "block", "pen", "plant", "pool")


def _object(patch: Patch, kind: str, rng: np.random.Generator) -> None:
    """A distinctive object just left of the player (columns -4..-1), which it walks away from."""
    if kind == "ore":
        patch.put(-1, 1, "cio"[int(rng.integers(3))]).put(-2, 1, "cio"[int(rng.integers(3))])
    elif kind == "block":
        patch.column(-1, -1, 0, "=#"[int(rng.integers(2))])
    elif kind == "pen":  # an animal between two posts two tiles high: it turns, it cannot leave
        animal = "ph"[int(rng.integers(2))]
        patch.column(-1, -1, 0, "=").column(-4, -1, 0, "=").put(-2 - int(rng.integers(2)), 0, animal)
    elif kind == "plant":
        patch.plant(-2, PLANTS[patch.biome])
    elif kind == "pool":
        liquid = "~%"[int(rng.integers(2))]
        patch.put(-1, 1, liquid).put(-2, 1, liquid).put(-3, 1, liquid)


def permanence(rng: np.random.Generator, suite: Suite) -> list[Probe]:
    """An object leaves the view while the player walks right k steps, then comes back into view (shifted, so a frozen
    copy of the context cannot match it) as the player walks back k - 1 steps. The last three frames are scored on
    world tiles that were in view in the context. A wider view walks as many more steps as it shows columns left of
    the player (the object's side)."""
    view = suite.view
    probes = []
    jobs = [("id", i, kind, k) for i, kind in enumerate(PERMANENCE_OBJECTS) for k in suite.permanence_k]
    jobs += [("ood", i, PERMANENCE_OBJECTS[int(rng.integers(len(PERMANENCE_OBJECTS)))], suite.permanence_k[1])
             for i in range(suite.ood)]
    for split, i, kind, k in jobs:
        walk = k + view.pad[0]
        patch = Patch(_biome(rng), left=10, right=k + 8, view=view, further=(0, walk - k))
        _object(patch, kind, rng)
        patch.decorate(rng, keep_clear=range(-5, 1), plants=0.0, ores=0.1)
        scenario, params = place(patch, rng, split, collect_seed=suite.collect_seed)
        actions = (RIGHT,) * walk + (LEFT,) * (walk - 1)
        n = len(actions)
        probes.append(_probe("permanence", f"{kind}-k{k}", split, i, [Run(scenario, WARMUP, actions, view)],
                             range(n - 2, n + 1), {**params, "object": kind, "k": k, "walk": walk},
                             seen_until=len(WARMUP) + 1, labels=(f"k={k}",) * 3))
    return probes


# ---- 2. causality --------------------------------------------------------------------------------------------------
CAUSES = ("mine", "place", "mine_up", "ore", "chop")


def causality(rng: np.random.Generator, suite: Suite) -> list[Probe]:
    """Mine or place once, then wait: the changed tile and the HUD count must still be right at each check, and after
    walking away (out of view) and back. A wider view walks as many more steps as it shows columns right of the
    player (the changed tile's side)."""
    view = suite.view
    probes = []
    wait = max(suite.causality_checks)
    walk = suite.causality_walk + view.pad[1]
    further = (walk - suite.causality_walk, 0)
    for split, i in _splits(len(CAUSES), suite.ood):
        cause = CAUSES[i] if split == "id" else CAUSES[int(rng.integers(len(CAUSES)))]
        biome = _biome(rng)
        patch = Patch(biome, left=suite.causality_walk + 6, right=8, view=view, further=further)
        patch.decorate(rng, keep_clear=range(-walk - 5, 3), plants=0.0, ores=0.15)
        inventory, action = {}, MINE
        if cause == "mine":
            patch.put(1, 0, "D#S"[int(rng.integers(3))] if biome != "desert" else "S")
        elif cause == "place":
            inventory, action = {"dirt": int(rng.integers(2, 20))}, PLACE
        elif cause == "mine_up":
            patch.put(0, -1, "D#="[int(rng.integers(3))])
            action = MINE_UP
        elif cause == "ore":
            patch.put(1, 0, "cio"[int(rng.integers(3))])
        elif cause == "chop":
            patch.plant(1, "tree")
        scenario, params = place(patch, rng, split, inventory=inventory, collect_seed=suite.collect_seed)
        actions = (action,) + (NOOP,) * (wait - 1) + (LEFT,) * walk + (RIGHT,) * walk
        checks = tuple(suite.causality_checks) + (len(actions),)
        labels = tuple(f"t={t}" for t in suite.causality_checks) + ("away and back",)
        probes.append(_probe("causality", cause, split, i, [Run(scenario, WARMUP, actions, view)], checks,
                             {**params, "cause": cause, "walk": walk}, labels=labels))
    return probes


# ---- 3. physics ----------------------------------------------------------------------------------------------------
LAWS = ("sand_falls", "ledge_fall", "jump", "wall", "animal_falls", "placed_sand")


def physics(rng: np.random.Generator, suite: Suite) -> list[Probe]:
    """Sand falls when its support is mined (and when placed over a pit), the player falls off a ledge, a jump rises
    and lands, an animal falls when the block under it is mined, and a walk into a wall is paired with the same walk
    on a free path. Every step of each motion is scored."""
    view = suite.view
    probes = []
    for split, i in _splits(len(LAWS), suite.ood):
        law = LAWS[i] if split == "id" else LAWS[int(rng.integers(len(LAWS)))]
        biome = _biome(rng)
        patch = Patch(biome, left=8, right=10, view=view)
        patch.decorate(rng, keep_clear=range(-2, 7), plants=0.0, ores=0.15)
        inventory, selected, runs = {}, "dirt", None
        if law in ("sand_falls", "animal_falls", "placed_sand"):
            patch.column(1, 1, 3, ".")  # a pit three deep in front of the player
        if law == "sand_falls":
            patch.put(1, 0, "D").column(1, -2, -1, "S")
            actions = (MINE,) + (NOOP,) * 5
        elif law == "animal_falls":  # the animal stands on the block, walled in two high on both sides
            patch.put(1, 0, "D").put(1, -1, "ph"[int(rng.integers(2))])
            patch.column(0, -2, -1, "=").column(2, -2, -1, "=")
            actions = (MINE,) + (NOOP,) * 5
        elif law == "placed_sand":
            inventory, selected = {"sand": int(rng.integers(2, 20))}, "sand"
            actions = (PLACE,) + (NOOP,) * 5
        elif law == "ledge_fall":
            for dx in range(1, 11 + view.pad[1]):
                patch.column(dx, 1, 3, ".")  # the ground drops three tiles right of the player, to the patch's edge
            actions = (RIGHT,) + (NOOP,) * 4
        elif law == "jump":
            actions = (JUMP_RIGHT, JUMP_RIGHT, NOOP, NOOP)
        if law == "wall":  # the same walk twice: into a wall, and where the wall is not
            patch.put(0, 0, "<")
            free = Patch(biome, left=8, right=10, facing="<", view=view)
            free.grid = [list(row) for row in patch.grid]
            patch.column(1, -1, 0, "#")
            scenario, params = place(patch, rng, split, collect_seed=suite.collect_seed)
            free_scenario = replace(scenario, map=free.map)
            actions = (RIGHT,) * 3
            runs = [Run(scenario, WARMUP, actions, view), Run(free_scenario, WARMUP, actions, view)]
        else:
            scenario, params = place(patch, rng, split, inventory=inventory, selected=selected,
                                     collect_seed=suite.collect_seed)
            runs = [Run(scenario, WARMUP, actions, view)]
        probes.append(_probe("physics", law, split, i, runs, range(1, len(actions) + 1), {**params, "law": law},
                             paired=law == "wall"))
    return probes


# ---- 4. consistency ------------------------------------------------------------------------------------------------
def consistency(rng: np.random.Generator, suite: Suite) -> list[Probe]:
    """A->B->A and A->B->C->A walks over varied ground, setting off right or left: the frames of every pass after the
    first are scored on the world tiles the first pass (and the context) showed. A wider view walks legs as many
    steps longer as it has columns more, so A's and B's views overlap in as many columns as at the default view."""
    view = suite.view
    probes = []
    walks = [(shape, k, d) for k in suite.consistency_k for shape in ("ABA", "ABCA") for d in (1, -1)]
    walks = [walks[i % len(walks)] for i in range(max(5, len(walks)))]
    for split, i in _splits(len(walks), suite.ood):
        shape, k, d = walks[i] if split == "id" else walks[int(rng.integers(len(walks)))]
        leg = k + sum(view.pad)
        patch = Patch(_biome(rng), left=2 * k + 8, right=2 * k + 8, view=view, further=(leg - k, leg - k))
        patch.decorate(rng, keep_clear=range(0, 1), plants=0.25, ores=0.3)
        scenario, params = place(patch, rng, split, collect_seed=suite.collect_seed)
        out, back = (RIGHT, LEFT) if d > 0 else (LEFT, RIGHT)
        if shape == "ABA":
            actions = (out,) * leg + (back,) * leg
            scored = range(leg + 1, 2 * leg + 1)
        else:
            actions = (out,) * leg + (back,) * (2 * leg) + (out,) * leg
            scored = list(range(leg + 1, 2 * leg + 1)) + list(range(3 * leg + 1, 4 * leg + 1))
        kind = f"{shape}{'' if d > 0 else '-left'}-k{k}"
        probes.append(_probe("consistency", kind, split, i, [Run(scenario, WARMUP, actions, view)], scored,
                             {**params, "walk": shape, "k": k, "direction": "right" if d > 0 else "left", "leg": leg},
                             seen_until=len(WARMUP) + 1 + leg))
    return probes


# ---- 5. control ----------------------------------------------------------------------------------------------------
STATES = ("open", "block_ahead", "overhang", "facing_left", "step_ahead")


def control(rng: np.random.Generator, suite: Suite) -> list[Probe]:
    """From one state, every action, each held `control_repeat` steps: twelve runs that share their context."""
    probes = []
    for split, i in _splits(len(STATES), suite.ood):
        state = STATES[i] if split == "id" else STATES[int(rng.integers(len(STATES)))]
        patch = Patch(_biome(rng), left=8, right=8, facing="<" if state == "facing_left" else ">", view=suite.view)
        patch.decorate(rng, keep_clear=range(-4, 5), plants=0.0, ores=0.3)
        if state == "block_ahead":
            patch.put(1, 0, "D")
        elif state == "overhang":
            patch.put(0, -2, "#").put(1, -2, "#").put(-1, -2, "#")
        elif state == "step_ahead":
            patch.column(2, 0, 0, "D").column(3, 0, 0, "D")
        inventory = {"dirt": int(rng.integers(1, 10)), "stone": int(rng.integers(1, 10))}
        scenario, params = place(patch, rng, split, inventory=inventory, collect_seed=suite.collect_seed)
        runs = [Run(scenario, WARMUP, (a,) * suite.control_repeat, suite.view) for a in range(len(Action))]
        probes.append(_probe("control", state, split, i, runs, range(1, suite.control_repeat + 1),
                             {**params, "state": state}))
    return probes


# ---- 6. stability --------------------------------------------------------------------------------------------------
STABILITY_TIMES = (0.05, 0.3, 0.45, 0.7, 0.88)  # morning, noon, just before dusk, night, before dawn


def stability(rng: np.random.Generator, suite: Suite) -> list[Probe]:
    """Long rollouts under the explorer agent's actions (chosen as it plays the engine): scored every
    `stability_every` steps on cells that are valid sprites and not frozen, on day/night continuity, and on the time
    spent at each light level against the engine's."""
    from worldsim.agents.explorer import ExplorerAgent

    probes = []
    for i, time_of_day in enumerate(STABILITY_TIMES):
        split = "id" if i < len(STABILITY_TIMES) - suite.ood else "ood"
        patch = Patch(_biome(rng), left=8, right=8, view=suite.view)
        patch.decorate(rng, keep_clear=range(0, 1))
        scenario, params = place(patch, rng, split, time_of_day=time_of_day, collect_seed=suite.collect_seed)
        env = suite.view.env()  # the explorer acts on what is in view: its actions are the view's
        agent = ExplorerAgent(env.action_space, env_id=ENV_ID)
        seed = int(rng.integers(2 ** 31))
        _, info = env.reset(seed=seed, options={"scenario": scenario})
        agent.reset(seed)
        for a in WARMUP:
            _, _, _, _, info = env.step(a)
        actions = []
        for _ in range(suite.stability_steps):
            a = agent.act(None, info)
            actions.append(int(a))
            _, _, terminated, _, info = env.step(a)
            if terminated:  # a death would end the episode: keep walking the rest out as waiting
                actions += [NOOP] * (suite.stability_steps - len(actions))
                break
        scored = range(suite.stability_every, suite.stability_steps + 1, suite.stability_every)
        probes.append(_probe("stability", f"t{STABILITY_TIMES[i]}", split, i,
                             [Run(scenario, WARMUP, tuple(actions), suite.view)],
                             scored, {**params, "agent_seed": seed}, labels=tuple(f"t={t}" for t in scored)))
    return probes


# ---- 7. reward -----------------------------------------------------------------------------------------------------
PAYDAYS = ("ore", "chop", "dig", "ore_below", "planks", "lava")


def reward(rng: np.random.Generator, suite: Suite) -> list[Probe]:
    """Where the game pays and where it does not: mine an ore (then swing at the air it leaves), chop a trunk twice
    (then hit the leaves, which drop nothing), dig through a block that pays nothing to an ore, mine an ore underfoot,
    place a plank (nothing) and mine it back (wood), mine an ore and walk into the lava under it (the episode ends).
    Each action that may pay stands between `reward_idle` quiet steps, where the game never pays; every step is
    scored."""
    probes = []
    idle = (NOOP,) * suite.reward_idle
    for split, i in _splits(len(PAYDAYS), suite.ood):
        kind = PAYDAYS[i] if split == "id" else PAYDAYS[int(rng.integers(len(PAYDAYS)))]
        biome = _biome(rng)
        patch = Patch(biome, left=8, right=8, view=suite.view)
        patch.decorate(rng, keep_clear=range(-2, 5), plants=0.0, ores=0.15)
        ore = ORES[int(rng.integers(len(ORES)))]
        inventory, selected = {}, "dirt"
        if kind == "ore":
            patch.put(1, 0, ore)
            beats = [(MINE,), (MINE,)]  # the second blow finds air
        elif kind == "chop":  # a cactus drops nothing: the desert's chop is a tree
            patch.plant(1, "tree" if PLANTS[biome] == "cactus" else PLANTS[biome])
            beats = [(MINE,), (RIGHT, MINE_UP), (MINE_UP,)]  # the trunk's foot, its top, then the crown
        elif kind == "dig":
            patch.put(1, 0, "D#S"[int(rng.integers(3))]).put(2, 0, ore)
            beats = [(MINE,), (RIGHT, MINE)]
        elif kind == "ore_below":
            patch.put(0, 1, ore)
            beats = [(MINE_DOWN,)]
        elif kind == "planks":
            inventory, selected = {"wood": int(rng.integers(1, 20))}, "wood"
            beats = [(PLACE,), (MINE,)]
        elif kind == "lava":
            patch.put(1, 0, ore).put(1, 1, "%").put(2, 1, "%")
            beats = [(MINE,), (RIGHT,)]
        scenario, params = place(patch, rng, split, inventory=inventory, selected=selected,
                                 collect_seed=suite.collect_seed)
        actions = idle + sum((beat + idle for beat in beats), ())
        probes.append(_probe("reward", kind, split, i, [Run(scenario, WARMUP, actions, suite.view)],
                             range(1, len(actions) + 1),
                             {**params, "kind": kind}, labels=("rollout",) * len(actions)))
    return probes


BUILDERS = {"permanence": permanence, "causality": causality, "physics": physics, "consistency": consistency,
            "control": control, "stability": stability, "reward": reward}


def build_suite(families, seed: int, suite: Suite) -> list[Probe]:
    """The probes of `families`, drawn from `seed` (each family from its own stream, so one does not shift another)."""
    probes = []
    for family in families:
        if family not in BUILDERS:
            raise ValueError(f"probe family {family!r}: expected one of {FAMILIES}")
        rng = np.random.default_rng([seed, FAMILIES.index(family)])
        probes += BUILDERS[family](rng, suite)
    return probes
