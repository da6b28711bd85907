"""Restyle, connect and extend backward (worldsim.edit) on a tiny random-weight model: the contracts (lengths, what
is copied, what is made, determinism, refusals), not what a trained model makes of them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from worldsim.edit import connect, extend_backward, restyle
from worldsim.simulator import WorldSimulator

from test_text import _world


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    return WorldSimulator.from_checkpoint(_world(tmp_path_factory.mktemp("edit") / "w.safetensors"), device="cpu")


def clip(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def test_restyle_keeps_the_clip_at_strength_zero_and_follows_the_caption_above(sim):
    frames, actions = clip(4, 0), np.array([-1, 0, 1, 2])
    same = restyle(sim, frames, actions, "night, snow biome", strength=0.0, steps=2)
    with torch.no_grad():
        round_trip = sim.ae.decode_uint8(sim.ae.encode(torch.from_numpy(frames))).numpy()
    gap = np.abs(same.frames.astype(int) - round_trip).max()  # frame by frame vs batched: rounding
    assert gap <= 1 and same.made.all() and (same.actions == actions).all()
    night = restyle(sim, frames, actions, "night, snow biome", strength=0.8, steps=2, seed=1)
    assert np.array_equal(night.frames, restyle(sim, frames, actions, "night, snow biome", strength=0.8, steps=2,
                                                seed=1).frames)  # a seed gives one result
    day = restyle(sim, frames, actions, "day, desert biome", strength=0.8, steps=2, seed=1)
    assert night.frames.shape == frames.shape and not np.array_equal(night.frames, day.frames)
    with pytest.raises(ValueError, match="strength"):
        restyle(sim, frames, actions, "night", strength=1.5)
    with pytest.raises(ValueError, match=r"clip frames.*\(T, 32, 32, 3\)"):
        restyle(sim, clip(2, 0)[:, :16], None, "night")
    with pytest.raises(ValueError, match=r"clip actions"):
        restyle(sim, frames, [0, 1], "night")


def test_connect_puts_a_made_transition_between_two_clips_kept_as_they_are(sim):
    a, b = clip(3, 1), clip(2, 2)
    out = connect(sim, a, b, length=4, b_actions=np.array([-1, 1]), steps=2)
    assert out.frames.shape == (9, 32, 32, 3)
    assert np.array_equal(out.frames[:3], a) and np.array_equal(out.frames[-2:], b)
    assert out.made.tolist() == [False] * 3 + [True] * 4 + [False] * 2
    assert out.actions.tolist() == [-1, -1, -1, 0, 0, 0, 0, 0, 1]  # the transition's action led into B
    with pytest.raises(ValueError, match="length"):
        connect(sim, a, b, length=0)
    with pytest.raises(ValueError, match=r"actions.*\(4,\)"):
        connect(sim, a, b, length=4, actions=[0, 1])


def test_extend_backward_ends_exactly_at_the_clip(sim):
    frames = clip(3, 3)
    out = extend_backward(sim, frames, length=3, caption="night")
    assert out.frames.shape == (6, 32, 32, 3) and np.array_equal(out.frames[3:], frames)
    assert out.made.tolist() == [True, True, True, False, False, False]
    fewer = extend_backward(sim, frames, length=3, caption="night", steps=1)  # the transition's solver passes
    assert np.array_equal(fewer.frames[0], out.frames[0]) and not np.array_equal(fewer.frames[1:3], out.frames[1:3])
    with pytest.raises(ValueError, match="length"):
        extend_backward(sim, frames, length=1)
