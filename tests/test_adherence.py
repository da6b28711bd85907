"""Prompt adherence: attributes() against the engine's own info, engine_frame() decoded back, score_adherence()'s
ends (the engine scores 1, a constant frame 0) and its refusals."""

from __future__ import annotations

from collections import Counter

import gymnasium as gym
import numpy as np
import pytest

from worldsim.envs.craft2d.tiles import BIOME_NAMES
from worldsim.probes.adherence import (
    DEFAULT_PROMPTS, FAMILIES, _env, attributes, engine_frame, engine_state, score_adherence,
)
from worldsim.prompt import ANIMALS, PHASES, expand_prompt


def _side(dx: int, dy: int) -> str:
    return ("left of" if dx < 0 else "right of") if dx else ("above" if dy < 0 else "below")


def test_attributes_agree_with_the_engine():
    """Random worlds, random actions: the phase and animals exactly, the biome on nearly every frame."""
    env = gym.make("worldsim/Craft2D-v0")
    rng = np.random.default_rng(0)
    n, biome_ok, named, named_ok = 150, 0, 0, 0
    for seed in range(n):
        frame, info = env.reset(seed=seed)
        for _ in range(int(rng.integers(0, 40))):
            frame, _, terminated, _, info = env.step(int(rng.integers(env.action_space.n)))
            if terminated:
                break
        a = attributes(frame)
        phase = info["caption"].split(", ")[0]
        assert phase in a["phases"] and a["phase"] in (phase, None)
        assert a["phase"] is not None or a["phases"] == {"dusk", "dawn"}  # only twilight is left open
        px, py = info["player_pos"]
        truth = Counter((e["kind"], _side(e["pos"][0] - px, e["pos"][1] - py)) for e in info["visible_entities"])
        assert Counter(a["animals"]) == truth
        assert a["entities"] == {e["kind"] for e in info["visible_entities"]}
        biome_ok += info["biome"] in a["biomes"]
        named += a["biome"] is not None
        named_ok += a["biome"] == info["biome"]
    assert biome_ok / n >= 0.95  # 98.7% on 5,000 frames (module docstring)
    assert named / n >= 0.5 and named_ok / named >= 0.95


def test_attributes_refuses_what_is_not_a_frame():
    with pytest.raises(ValueError, match=r"expected a \(H, W, 3\) uint8"):
        attributes(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match=r"expected a \(H, W, 3\) uint8"):
        attributes(np.zeros((64, 64), np.uint8))


PROMPTS = ["woods at sunset", "dunes at noon", "tundra at midnight", "meadow at sunrise", "a pig to the left",
           "two sheep on the right in the desert", "a sheep above, a pig below", "swimming in a snowy lake with a pig"]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_engine_frame_shows_what_was_asked(prompt):
    ex = expand_prompt(prompt)
    for seed in range(3):
        frame = engine_frame(prompt, seed)
        a = attributes(frame)
        assert ex.phase is None or ex.phase in a["phases"]
        assert ex.biome is None or ex.biome in a["biomes"]
        assert not Counter(ex.animals) - Counter(a["animals"])
        env = _env(())
        env.set_state(engine_state(prompt, seed))  # the engine's own caption of that state says it too
        assert set(ex.caption.split(", ")) <= set(env.game.info()["caption"].split(", "))
        assert np.array_equal(env.render(), frame)


def test_engine_frame_is_seed_deterministic():
    assert np.array_equal(engine_frame("a pig at dusk", 5), engine_frame("a pig at dusk", 5))
    assert not np.array_equal(engine_frame("a pig at dusk", 5), engine_frame("a pig at dusk", 6))
    assert engine_frame("", 0).shape == (64, 64, 3)
    assert engine_frame("night", 0, view_width=12).shape == (64, 96, 3)


def test_default_prompts_are_the_grid():
    expansions = [expand_prompt(p) for p in DEFAULT_PROMPTS]
    assert all(not e.unknown for e in expansions)
    assert {(e.phase, e.biome) for e in expansions if e.phase} == {(p, b) for p in PHASES for b in BIOME_NAMES}
    assert {e.animals for e in expansions if e.animals} == {((k, s),) for k in ANIMALS for s in ("left of", "right of")}


def _engine(captions: list[str], seed: int) -> np.ndarray:
    return np.stack([engine_frame(c, seed) for c in captions])


def test_the_engine_scores_one():
    result = score_adherence(_engine, seeds=2)
    for family in FAMILIES:
        r = result[family]
        assert r["score"] == 1.0 and r["model"] == r["ceiling"] > r["floor"], (family, r)
    assert result["phase"]["n"] == result["biome"]["n"] == 32 and result["entities"]["n"] == 8


def test_a_constant_frame_scores_zero():
    frame = engine_frame("day, forest biome", 0)
    result = score_adherence(lambda captions, seed: np.stack([frame] * len(captions)), seeds=2)
    for family in FAMILIES:
        assert result[family]["score"] == 0.0 and result[family]["model"] == result[family]["floor"]


@pytest.mark.parametrize("bad", [
    lambda captions, seed: np.zeros((len(captions), 64, 64, 3), np.float32),  # not uint8
    lambda captions, seed: np.zeros((len(captions) - 1, 64, 64, 3), np.uint8),  # a frame short
    lambda captions, seed: np.zeros((len(captions), 64, 96, 3), np.uint8),  # another frame size
    lambda captions, seed: [np.zeros((64, 64, 3), np.uint8)] * len(captions),  # a list
])
def test_a_generate_of_the_wrong_shape_is_refused(bad):
    with pytest.raises(ValueError, match=r"generate\(captions, 0\) returned .*expected a uint8 numpy array of shape"):
        score_adherence(bad, prompts=["night"], seeds=1)


def test_bad_arguments():
    with pytest.raises(ValueError, match="non-empty sequence of prompts"):
        score_adherence(_engine, prompts="night")
    with pytest.raises(ValueError, match="seeds=0"):
        score_adherence(_engine, seeds=0)
