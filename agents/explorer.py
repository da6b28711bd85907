"""Purposeful Craft2D play for data collection: walks that come back over seen ground, digging, building, pillaring,
chasing animals.

It reads only `info` (never the env's internals, never the frame), so it drives any Craft2D env, in worker processes
too, for a few microseconds a step. It cannot see the terrain: it learns about walls by bumping into them.
"""

from __future__ import annotations

from typing import Any, Mapping

import gymnasium as gym
import numpy as np

from worldsim.envs.craft2d.engine import MAX_HEALTH, SAFE_FALL
from worldsim.envs.craft2d.tiles import ITEM_NAMES, N_ACTIONS, PLACEABLE, Action, is_craft2d

# Plain ints for the hot path: reading an IntEnum member costs about a microsecond.
(NOOP, LEFT, RIGHT, JUMP, JUMP_LEFT, JUMP_RIGHT, MINE, MINE_UP, MINE_DOWN, PLACE, PLACE_DOWN,
 NEXT_BLOCK) = (int(a) for a in Action)
SELECT = -1  # a script step, not an action: press next_block until a placeable block we hold is selected
STEP = (NOOP, RIGHT, LEFT)  # indexed by direction d: STEP[1] is right, STEP[-1] is left
HOP = (JUMP, JUMP_RIGHT, JUMP_LEFT)  # the same for jumps
MOVES = (LEFT, RIGHT, JUMP_LEFT, JUMP_RIGHT)  # the actions that should change x
PLACEABLE_NAMES = tuple(ITEM_NAMES[item] for item in PLACEABLE)

# What the planner strings together, with relative weights. "chase" needs an animal in view (else "loop"); "build",
# "pillar" and "tinker" need blocks in hand (else "dig", which is how the explorer gets them). Walks take most of the
# steps anyway: a loop lasts ~10-240 steps, a dig or a build ~10. "forage" and "tinker" are off by default (the
# recipe's data was collected without them); `plan_weights` turns them on (configs/collect/experiment/craft2d_work).
PLAN_WEIGHTS = {"loop": 2.0, "triangle": 1.0, "one_way": 1.0, "dig": 1.5, "build": 2.0, "pillar": 1.5, "chase": 0.5,
                "forage": 0.0, "tinker": 0.0}

HURT = MAX_HEALTH // 2  # health at or below which the explorer keeps its falls short
RESERVE = 4  # blocks in hand below which the planner often digs for more: they break falls (see _break_fall)
_WALK, _CHASE = 1, 2  # what the current task is; scripts run from `self.script` with no task kind


def _check_range(name: str, value: tuple[int, int], low: int = 1) -> tuple[int, int]:
    lo, hi = value
    if not low <= lo <= hi:
        raise ValueError(f"{name}={value}: expected (low, high) with {low} <= low <= high")
    return int(lo), int(hi)


class ExplorerAgent:
    """Goes places and comes back: legs to target columns in A->B->A and A->B->C->A loops, long one-way walks,
    digging down and climbing out, building a small tower and walking back past it, pillaring up, chasing animals.

    Walking into a wall it jumps, then digs a step into the wall (or, holding blocks, pillars up), so it climbs
    hills, cliffs and pits; after `stuck_limit` steps without moving, or at bedrock, it gives the target up.

    Options (all keyword):
        short_leg, long_leg: (min, max) tiles of a loop's leg; a long leg (probability `long_prob`) makes a loop
            outlast a model's 32-64 step context, a short one keeps the start in view.
        one_way: (min, max) tiles of a walk that does not come back.
        dig_depth, pillar_height: (min, max) tiles dug straight down, or pillared up.
        tower_height: (min, max) blocks of a built tower, at most 2 (placed standing, then jumping).
        chase_steps: (min, max) steps spent following an animal in view.
        chase_prob: chance of breaking off a walk to chase an animal that comes into view.
        hop_prob: chance per walking step of jumping for no reason (variety; walls are handled anyway).
        pillar_prob: chance of pillaring rather than digging a step when climbing a wall with blocks in hand
            (0.8 in a pit it dug itself).
        stuck_limit: steps without a change of column before a target is given up.
        plan_weights: relative weights of the plans in `PLAN_WEIGHTS`, replacing them.
        wait_steps: (min, max) steps "forage" and "tinker" stand still after each change, watching it stay.

    Two plans change the world in place rather than go places, for data where actions have effects to learn: "forage"
    edges along, mining ahead or above every few steps (tree trunks, ores, the ground's bumps, a tunnel into a
    hill), and "tinker" places a block ahead, waits, mines it back, waits; both then walk away and come back past
    the spot. Both wait after each change (`wait_steps`), so the data shows a change lasting.
    """

    name = "explorer"

    def __init__(self, action_space: gym.Space, env_id: str | None = None, *,
                 short_leg: tuple[int, int] = (4, 10), long_leg: tuple[int, int] = (40, 120),
                 long_prob: float = 0.5, one_way: tuple[int, int] = (60, 160), dig_depth: tuple[int, int] = (2, 5),
                 pillar_height: tuple[int, int] = (2, 4), tower_height: tuple[int, int] = (1, 2),
                 chase_steps: tuple[int, int] = (20, 60), chase_prob: float = 0.3, hop_prob: float = 0.05,
                 pillar_prob: float = 0.3, stuck_limit: int = 40, plan_weights: Mapping[str, float] | None = None,
                 wait_steps: tuple[int, int] = (0, 8)):
        if env_id is not None and not is_craft2d(env_id):
            raise ValueError(f"agent=explorer plays Craft2D (worldsim/Craft2D-v<N>), not {env_id!r}: "
                             f"use agent=random for other envs")
        if not isinstance(action_space, gym.spaces.Discrete) or action_space.n != N_ACTIONS:
            raise ValueError(f"agent=explorer needs Craft2D's Discrete({N_ACTIONS}) action space, got {action_space}: "
                             f"use agent=random for other envs")
        self.short_leg, self.long_leg = _check_range("short_leg", short_leg), _check_range("long_leg", long_leg)
        self.one_way = _check_range("one_way", one_way)
        self.dig_depth = _check_range("dig_depth", dig_depth)
        self.pillar_height = _check_range("pillar_height", pillar_height)
        self.tower_height = _check_range("tower_height", tower_height)
        if self.tower_height[1] > 2:
            raise ValueError(f"tower_height={tower_height}: at most 2 blocks, the height a jump reaches to place")
        self.chase_steps = _check_range("chase_steps", chase_steps)
        self.wait_steps = _check_range("wait_steps", wait_steps, low=0)
        for key, p in (("long_prob", long_prob), ("chase_prob", chase_prob), ("hop_prob", hop_prob),
                       ("pillar_prob", pillar_prob)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{key}={p}: expected a probability in [0, 1]")
        if stuck_limit < 4:
            raise ValueError(f"stuck_limit={stuck_limit}: expected at least 4 steps (a climb takes a few)")
        self.long_prob, self.chase_prob, self.hop_prob = long_prob, chase_prob, hop_prob
        self.pillar_prob, self.stuck_limit = pillar_prob, stuck_limit
        weights = dict(PLAN_WEIGHTS if plan_weights is None else plan_weights)
        unknown = set(weights) - set(PLAN_WEIGHTS)
        if unknown or any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError(f"plan_weights {weights}: expected non-negative weights with a positive sum over "
                             f"{sorted(PLAN_WEIGHTS)}")
        self.plans = sorted(weights)
        self.plan_probs = np.array([weights[p] for p in self.plans], np.float64) / sum(weights.values())
        self.current = self.name
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)
        self.tasks: list[tuple] = []  # the rest of the plan, next task last
        self.script: list[int] = []  # fixed actions to run first, next one last
        self.kind = None  # _WALK, _CHASE or None
        self.target = 0  # column of a walk
        self.budget = 0  # steps left for the current task
        self.pit = False  # climbing out of a hole we dug: prefer pillaring
        self.chase_at: tuple[int, int] | None = None
        self.saw = False  # an animal was in view last step
        self.lo, self.hi = -(1 << 30), 1 << 30  # columns known reachable: bedrock found at the world's sides
        self.px = self.py = None
        self.last = NOOP
        self.noprog = self.fails = self.mine_fails = self.drop = 0
        self.up_dud = False  # the last mine_up found nothing to mine

    # ---- the hot path ------------------------------------------------------------------------------------------
    def act(self, obs: np.ndarray, info: dict[str, Any]) -> int:
        x, y = info["player_pos"]
        last = self.last
        if x != self.px:
            self.noprog = self.fails = 0
        else:
            self.noprog += 1
            if last in MOVES:
                self.fails += 1
        if last == MINE or last == MINE_UP:
            events = info["events"]
            if not events or not events[0].startswith("player mined"):  # bedrock, air, or an animal in the way
                if last == MINE:
                    self.mine_fails += 1
                else:
                    self.up_dud = True
        self.budget -= 1
        seen = info["visible_entities"]
        if seen and not self.saw and self.kind == _WALK and not self.script and self.rng.random() < self.chase_prob:
            self.tasks.append(("walk", self.target))  # chase the animal that came into view, then walk on
            self._start(("chase", self._between(self.chase_steps)), x, y)
        self.saw = bool(seen)
        if self.py is not None and y > self.py and last != MINE_DOWN:
            self.drop += 1  # falling free, or walking down a slope: a block below stops a fall before it hurts
            a = self._break_fall(info)
            if a is not None:
                self.px, self.py, self.last = x, y, a
                return a
        else:
            self.drop = 0
        a = self._choose(x, y, info)
        self.px, self.py, self.last = x, y, a
        return a

    def _choose(self, x: int, y: int, info: dict[str, Any]) -> int:
        for _ in range(16):  # each pass either acts or finishes something; a few passes at most
            if self.script:
                a = self.script.pop()
                if a != SELECT:
                    return a
                a = self._select(info)
                if a is not None:
                    return a
                continue
            if self.kind == _WALK:
                a = self._walk(x, y, self.target, info)
                if a is not None:
                    return a
            elif self.kind == _CHASE:
                a = self._chase(x, y, info)
                if a is not None:
                    return a
            self._next_task(x, y, info)
        return NOOP

    def _walk(self, x: int, y: int, tx: int, info: dict[str, Any]) -> int | None:
        """One step towards column `tx`; None when there, or when giving up."""
        if x == tx:
            return None
        d = 1 if tx > x else -1
        if self.budget <= 0 or self.noprog > self.stuck_limit or self.mine_fails >= 2:
            if self.mine_fails >= 2:  # an unminable wall: the world's side, so no target lies beyond it
                if d < 0:
                    self.lo = max(self.lo, x)
                else:
                    self.hi = min(self.hi, x)
            return None
        fails, last = self.fails, self.last
        if fails == 0:
            return HOP[d] if self.rng.random() < self.hop_prob else STEP[d]
        if fails == 1 or last != HOP[d]:
            return HOP[d]  # climbs a one-tile step
        # A jump towards d did not get us across: the wall is two or more high, or there is a ceiling.
        if y < self.py:  # the jump rose: we are in the air beside the wall's second tile
            inventory = info["inventory"]
            climb = self.pillar_prob if not self.pit else 0.8
            if inventory.get(info["selected"], 0) > 0 and self.rng.random() < climb:
                self.script.append(HOP[d])
                return PLACE_DOWN  # stand a tile higher, then try again
            self.script.append(HOP[d])
            return MINE  # dig out the second tile: the first becomes a step
        if self.pit and self._holds_block(info["inventory"]) and \
                info["inventory"].get(info["selected"], 0) == 0:
            return NEXT_BLOCK  # get a block in hand for pillaring out
        if self.up_dud:  # nothing to mine above, yet the jump failed: an animal stands on our head (in a shaft)
            self.up_dud = False
            self.script.append(STEP[d])
            return MINE  # tunnel sideways instead
        self.script.append(HOP[d])
        return MINE_UP  # a ceiling stopped the jump

    def _break_fall(self, info: dict[str, Any]) -> int | None:
        """While going down, get a block in hand; after SAFE_FALL tiles in a row (one fewer when hurt), place it below
        to land on, before the fall hurts. Walking down a slope looks the same from `info`: there place_down finds
        ground and does nothing."""
        inventory = info["inventory"]
        if inventory.get(info["selected"], 0) > 0:
            safe = SAFE_FALL if info["health"] > HURT else SAFE_FALL - 1
            return PLACE_DOWN if self.drop >= safe else None
        return NEXT_BLOCK if self._holds_block(inventory) else None

    def _chase(self, x: int, y: int, info: dict[str, Any]) -> int | None:
        if self.budget <= 0:
            return None
        seen = info["visible_entities"]
        if not seen:
            return None
        cx, cy = self.chase_at
        ax, ay = min((e["pos"] for e in seen), key=lambda p: abs(p[0] - cx) + abs(p[1] - cy))
        self.chase_at = (ax, ay)
        if ax == x:
            return None  # right above or below us, out of reach: give it up
        if abs(ax - x) == 1:  # caught up: wait for it to move on, hop, or nudge it
            r = self.rng.random()
            return NOOP if r < 0.5 else JUMP if r < 0.75 else STEP[1 if ax > x else -1]
        return self._walk(x, y, ax, info)

    def _select(self, info: dict[str, Any]) -> int | None:
        """For SELECT: None when a held block is selected; next_block when one is held; else drop the script."""
        inventory = info["inventory"]
        if inventory.get(info["selected"], 0) > 0:
            return None
        if self._holds_block(inventory):
            self.script.append(SELECT)
            return NEXT_BLOCK
        self.script.clear()  # nothing to place: the rest of the script would do nothing
        return None

    @staticmethod
    def _holds_block(inventory: dict[str, int]) -> bool:
        return any(inventory.get(name, 0) > 0 for name in PLACEABLE_NAMES)

    # ---- the planner -------------------------------------------------------------------------------------------
    def _next_task(self, x: int, y: int, info: dict[str, Any]) -> None:
        if not self.tasks:
            self.tasks = self._plan(x, info)[::-1]
        self._start(self.tasks.pop(), x, y)

    def _start(self, task: tuple, x: int, y: int) -> None:
        self.kind = None
        self.noprog = self.fails = self.mine_fails = 0
        if task[0] == "walk":
            self.kind, self.target = _WALK, min(max(task[1], self.lo), self.hi)
            self.budget = 3 * abs(self.target - x) + 60
            self.pit = task[2] if len(task) > 2 else False
        elif task[0] == "chase":
            self.kind, self.budget = _CHASE, task[1]
            self.chase_at = (x, y)
        else:  # "script"
            self.script = list(task[1])[::-1]

    def _leg(self) -> int:
        lo, hi = self.long_leg if self.rng.random() < self.long_prob else self.short_leg
        return int(self.rng.integers(lo, hi + 1))

    def _between(self, bounds: tuple[int, int]) -> int:
        return int(self.rng.integers(bounds[0], bounds[1] + 1))

    def _plan(self, x: int, info: dict[str, Any]) -> list[tuple]:
        """The next few tasks, first one first: ("walk", column[, pit]), ("chase", steps), ("script", actions)."""
        rng = self.rng
        plan = self.plans[int(rng.choice(len(self.plans), p=self.plan_probs))]
        d = 1 if rng.random() < 0.5 else -1
        blocks = sum(info["inventory"].get(name, 0) for name in PLACEABLE_NAMES)
        if plan == "chase" and not info["visible_entities"]:
            plan = "loop"
        if plan == "forage":
            return [("script", self._forage(d))] + self._away_and_back(x, d)
        if plan == "tinker" and blocks:  # it mines back each block it places: one in hand will do
            return [("script", self._tinker(d))] + self._away_and_back(x, d)
        if blocks == 0 or (blocks < RESERVE and rng.random() < 0.5) or (plan == "build" and blocks < 3) or \
                (plan == "pillar" and blocks < RESERVE + self.pillar_height[1]):
            plan = "dig"
        if plan == "loop":
            tasks = [("walk", x + d * self._leg())]
            if rng.random() < 0.2:
                tasks.append(("script", (NOOP,) * self._between((1, 4))))  # look around at the far end
            return tasks + [("walk", x)]
        if plan == "triangle":
            b = x + d * self._leg()
            c = b + d * self._leg() if rng.random() < 0.5 else x - d * self._leg()  # further on, or past A
            return [("walk", b), ("walk", c), ("walk", x)]
        if plan == "one_way":
            return [("walk", x + d * self._between(self.one_way))]
        if plan == "chase":
            return [("chase", self._between(self.chase_steps)), ("walk", x + d * self._leg())]
        away = [("walk", x + d * self._leg())] + ([("walk", x)] if rng.random() < 0.5 else [])
        if plan == "dig":
            script = [MINE_DOWN] * self._between(self.dig_depth)
            if blocks and rng.random() < 0.5:  # pillar back out; else walk out, digging steps into the pit's side
                return [("script", script + [SELECT, JUMP, PLACE_DOWN] * len(script))] + away
            return [("script", script), ("walk", x + d * self._leg(), True)] + away[1:]
        if plan == "pillar":
            n = self._between(self.pillar_height)
            if info["health"] <= HURT:
                n = min(n, SAFE_FALL)  # walking off a higher pillar hurts
            start = [NEXT_BLOCK] if rng.random() < 0.3 else []  # vary the block
            return [("script", start + [SELECT, JUMP, PLACE_DOWN] * n)] + away
        # build: face d, place a tower of one or two blocks there, walk away and later back past it
        script = [STEP[d]]
        for _ in range(1 if rng.random() < 0.6 else 2):  # one tower or two, the second on the other side
            script += [SELECT, PLACE] + [SELECT, JUMP, PLACE] * (self._between(self.tower_height) - 1)
            script += [STEP[-d]]
            d = -d
        return [("script", script), ("walk", x + d * self._between((20, 60))),
                ("walk", x - d * self._between((10, 40)))]

    def _wait(self) -> list[int]:
        return [NOOP] * self._between(self.wait_steps)

    def _forage(self, d: int) -> list[int]:
        """Edge along towards d a few tiles at a time, mining ahead (or above) after each, then watching."""
        script = []
        for _ in range(self._between((4, 10))):
            script += [STEP[d]] * self._between((1, 4))
            script += [MINE if self.rng.random() < 0.7 else MINE_UP] + self._wait()
        return script

    def _tinker(self, d: int) -> list[int]:
        """Place a block ahead, watch, mine it back, watch; two to five times, sometimes turning round between."""
        script = []
        for _ in range(self._between((2, 5))):
            script += [STEP[d], SELECT, PLACE] + self._wait() + [MINE] + self._wait()
            if self.rng.random() < 0.5:
                d = -d
        return script

    def _away_and_back(self, x: int, d: int) -> list[tuple]:
        """Walk off and back past column x, did the change last? Mostly a short leg (the spot stays near), a third of
        the time a long one (out of view for longer than a model's context)."""
        lo, hi = self.long_leg if self.rng.random() < 0.3 else self.short_leg
        return [("walk", x + d * self._between((lo, hi))), ("walk", x - d * self._between((2, 6)))]
