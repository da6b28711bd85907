"""The run's own question of its reward head in play: which held-out rewards does the dream pay for?"""

from __future__ import annotations

import numpy as np
import pytest

from worldsim.data.loader import ClipDataset
from worldsim.train.dream_reward import dream_scores, event_clips, paying_clips, payments

from conftest import random_craft2d


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return random_craft2d(tmp_path_factory.mktemp("paying") / "data", 1200, max_episode_steps=60, shard_steps=400)


def _rows(val: ClipDataset, i: int, frames: range) -> set[tuple[int, int]]:
    return {(int(val.shard_of[i]), int(val.starts[i]) + f) for f in frames}


def test_every_held_out_reward_with_room_around_it_is_scored_on_varied_rollout_steps(data):
    context, clip_len = 2, 10
    val = ClipDataset(data, clip_len, "val", 0.3)
    picks = event_clips(val, context, most=100)
    rewards = val.rewards_of(picks)
    assert len(picks) and (rewards[:, context:] != 0).any(1).all()  # every clip pays in its rollout steps
    scored = set().union(*(_rows(val, i, range(context, clip_len)) for i in picks))
    everything = np.arange(len(val))
    paid = {row for i, r in zip(everything, val.rewards_of(everything)) for row in _rows(val, i, range(clip_len))
            if r[row[1] - int(val.starts[i])] != 0}
    # a reward with `context` frames of its episode before it and the rollout's steps after it has a clip
    roomy = {row for row in paid if any(row in _rows(val, i, range(context, context + 1)) for i in everything)
             and any(row in _rows(val, i, range(clip_len - 1, clip_len)) for i in everything)}
    assert roomy and roomy <= scored
    first = [int(np.flatnonzero(r[context:])[0]) for r in rewards]  # the rollout step of each clip's first reward
    assert len(set(first)) > 1, first  # not all on one step
    assert list(event_clips(val, context, most=2)) == list(picks[[0, -1]])  # spread over all, not the first two
    assert len(event_clips(val, context, most=0)) == 0


def test_payments_match_the_data_within_a_step_and_count_the_rest_as_false():
    truth = np.array([[0, 1, 0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0]], np.float32)
    paid = np.array([[0, 0, 1, 0, 0, 0, 0, 1], [1, 0, 0, 0, 0, 0, 0, 0]], np.float32)
    c = payments(truth, paid)
    assert c == {"events": 2, "hits": 1, "false": 2, "steps": 16}  # a step late matches; 2 steps late does not
    assert dream_scores(c, c) == {"dream_reward_recall": 0.5, "dream_reward_events": 2.0,
                                  "dream_false_per_100": 12.5}
    assert payments(truth, truth) == {"events": 2, "hits": 2, "false": 0, "steps": 16}


def test_held_out_data_that_never_pays_gives_no_clips(tmp_path):
    quiet = random_craft2d(tmp_path / "quiet", 200, max_episode_steps=50, shard_steps=200)  # no reward in 200 steps
    val = ClipDataset(quiet, 10, "val", 0.3)
    assert not len(val.event_clips()), "the fixture should hold no event"
    assert len(event_clips(val, 2, 16)) == 0
    assert paying_clips(val, [str(quiet)], 0.3, 2, 16) is None


def test_paying_clips_come_from_every_held_out_dataset_at_the_data_frame_size(data, tmp_path):
    from worldsim.data.collect import CollectConfig, collect

    context, clip_len = 2, 10
    val = ClipDataset(data, clip_len, "val", 0.3)
    alone = paying_clips(val, [], 0.3, context, most=100)
    n = len(event_clips(val, context, most=100))
    assert len(alone.frames) == n and alone.frames.shape[2:] == (64, 64, 3)
    wide = tmp_path / "wide"  # 96 px wide: a view another batch would have to play
    collect(CollectConfig(out=str(wide), agent="random", steps=1200, env_kwargs={"world_width": 64, "view_width": 12},
                          max_episode_steps=60, shard_steps=400), quiet=True)
    assert len(event_clips(ClipDataset(wide, clip_len, "val", 0.3), context, most=100)), "the fixture should pay"
    both = paying_clips(val, [str(wide), str(data)], 0.3, context, most=100)  # data again: a view of its size
    assert len(both.frames) == 2 * n and both.frames.shape[2:] == (64, 64, 3)  # the wide view passed over
    np.testing.assert_array_equal(both.rewards[:n], alone.rewards)
    np.testing.assert_array_equal(both.rewards[n:], alone.rewards)
    capped = paying_clips(val, [str(data)], 0.3, context, most=3)  # spread over both: the first and the last
    np.testing.assert_array_equal(capped.rewards[[0, -1]], alone.rewards[[0, -1]])
    assert len(capped.frames) == 3 and capped.captions is None
