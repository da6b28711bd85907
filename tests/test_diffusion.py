"""Flow matching pieces: noising per chunk, the sampler, the schedule, the training loss."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from worldsim.models.diffusion import (
    DiffusionConfig, add_noise, sample, sample_sigma, schedule, to_velocity, training_loss,
)


def test_add_noise_uses_each_chunks_own_level():
    x0, eps = torch.zeros(2, 4, 3, 2, 2), torch.ones(2, 4, 3, 2, 2)
    sigma = torch.tensor([[0.0, 0.5], [1.0, 0.25]])  # 2 chunks of 2 frames
    x = add_noise(x0, sigma, eps)
    assert torch.allclose(x[:, :, 0, 0, 0], torch.tensor([[0.0, 0.0, 0.5, 0.5], [1.0, 1.0, 0.25, 0.25]]))


@pytest.mark.parametrize("steps", [1, 2, 4])
@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_euler_on_the_exact_velocity_lands_on_the_data(steps, shift):
    # for a single data point x0 the flow is straight: v(x, s) = (x - x0) / s, and Euler is exact at any step count
    gen = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(3, 1, 4, 2, 2, generator=gen), torch.randn(3, 1, 4, 2, 2, generator=gen)
    out = sample(lambda x, s: (x - x0) / s.view(-1, 1, 1, 1, 1), noise, steps, shift)
    assert torch.allclose(out, x0, atol=1e-5)


def test_a_wrong_velocity_misses():
    x0, noise = torch.zeros(1, 1, 2, 2, 2), torch.ones(1, 1, 2, 2, 2)
    assert not torch.allclose(sample(lambda x, s: torch.zeros_like(x), noise, 2), x0)


def test_schedule_runs_from_one_to_zero_and_shift_keeps_noise_longer():
    s = schedule(4)
    assert s[0] == 1 and s[-1] == 0 and torch.all(s[1:] < s[:-1])
    assert torch.all(schedule(4, shift=3.0)[1:-1] > s[1:-1])
    with pytest.raises(ValueError, match="steps=0"):
        schedule(0)


def test_training_sigmas_are_in_range_with_some_clean_chunks():
    cfg = DiffusionConfig(clean_prob=0.25)
    s = sample_sigma(cfg, (4000,), torch.Generator().manual_seed(0))
    assert s.min() >= 0 and s.max() < 1
    assert 0.2 < (s == 0).float().mean() < 0.3
    assert 0.4 < s[s > 0].median() < 0.6  # logit-normal around 0.5


def test_training_loss_targets_the_velocity():
    x0 = torch.randn(2, 3, 4, 2, 2)

    def zero_model(x, sigma, actions):
        b, n = sigma.shape
        return SimpleNamespace(out=torch.zeros_like(x), reward=torch.zeros(b, n), terminated_logit=torch.zeros(b, n))

    gen = torch.Generator().manual_seed(1)
    loss, logs = training_loss(zero_model, x0, torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3),
                               torch.zeros(2, 3), DiffusionConfig(prediction="velocity"), gen)
    # E|eps - x0|^2 = 1 + |x0|^2
    assert logs["denoise_loss"] == pytest.approx(((x0 - 0) ** 2).mean().item() + 1, rel=0.3)
    assert logs["reward_loss"] == 0 and logs["terminated_loss"] == pytest.approx(0.6931, abs=1e-3)
    assert loss.item() == pytest.approx(logs["denoise_loss"] + 0.1 * 0.6931, rel=1e-4)


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_an_exact_x0_prediction_lands_on_the_data(steps):
    gen = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(3, 1, 4, 2, 2, generator=gen), torch.randn(3, 1, 4, 2, 2, generator=gen)
    out = sample(lambda x, s: to_velocity(x0.expand_as(x), x, s, "x0"), noise, steps)
    assert torch.allclose(out, x0, atol=1e-5)
    assert to_velocity(noise, x0, torch.ones(3), "velocity") is noise  # velocity passes through


def test_x0_training_targets_the_clean_latents():
    x0 = torch.randn(2, 3, 4, 2, 2)

    def perfect(x, sigma, actions):
        b, n = sigma.shape
        return SimpleNamespace(out=x0, reward=torch.zeros(b, n), terminated_logit=torch.full((b, n), -30.0))

    cfg = DiffusionConfig(prediction="x0")
    _, logs = training_loss(perfect, x0, torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3), torch.zeros(2, 3),
                            cfg, torch.Generator().manual_seed(1))
    assert logs["denoise_loss"] == 0.0
    with pytest.raises(ValueError, match="prediction='eps'"):
        DiffusionConfig(prediction="eps")


@pytest.mark.parametrize("field, value, message", [
    ("denoise_steps", 0, r"denoise_steps=0: expected an integer >= 1"),
    ("shift", 0.0, r"shift=0.0: expected > 0"),
    ("sigma_std", -1.0, r"sigma_std=-1.0: expected > 0"),
    ("history_sigma", 1.0, r"history_sigma=1.0: expected a noise level in \[0, 1\)"),
    ("clean_prob", 1.5, r"clean_prob=1.5: expected a probability"),
    ("reward_weight", -0.1, r"reward_weight, terminated_weight=\(-0.1, 0.1\): expected weights >= 0"),
    ("self_history", 0.5, r"self_history=0.5: expected a probability in \[0, 1\], above 0 only with history='clean'"),
    ("self_rollout", 4, r"self_rollout=4: expected a number of chunks >= 0, above 0 only with history='clean'"),
    ("self_rollout_share", 0.0, r"self_rollout_share=0.0: expected a share in \(0, 1\]"),
    ("action_balance", 2.0, r"action_balance=2.0: expected an exponent in \[0, 1\]"),
])
def test_bad_settings_are_refused_naming_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        DiffusionConfig(**{field: value})


def test_change_weights_single_out_the_patches_that_changed():
    from worldsim.models.diffusion import change_weights
    x0 = torch.zeros(1, 3, 2, 4, 4)
    x0[0, 2, 1, 0, 3] = 1.0  # frame 2 differs from frame 1 in one latent of the top-right 2x2 patch
    w = change_weights(x0, (1, 2, 2), 3.0)
    assert w.shape == (1, 3, 1, 4, 4) and torch.isclose(w.mean(), torch.tensor(1.0))
    changed = w[0, 2, 0, :2, 2:]
    assert (changed == changed.max()).all() and torch.isclose(changed.max() / w.min(), torch.tensor(4.0))
    assert (w[0, :2] == w.min()).all() and (w[0, 2, 0, 2:] == w.min()).all()


def test_clean_history_training_gives_the_model_the_clip_and_reward_classes_their_cross_entropy():
    seen = {}

    class Model:
        config = SimpleNamespace(patch=(1, 2, 2), reward_values=(0.0, 1.0))

        def __call__(self, x, sigma, actions, history=None, history_sigma=None):
            seen.update(history=history, history_sigma=history_sigma)
            b, n = sigma.shape
            logits = torch.tensor([-20.0, 20.0]).expand(b, n, 2)  # sure of reward 1
            return SimpleNamespace(out=torch.zeros_like(x), reward=logits, terminated_logit=torch.full((b, n), -30.0))

    x0 = torch.randn(2, 3, 2, 4, 4)
    rewards = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    cfg = DiffusionConfig(history="clean", history_noise=0.2)
    _, logs = training_loss(Model(), x0, torch.zeros(2, 3, dtype=torch.long), rewards, torch.zeros(2, 3), cfg)
    assert (seen["history_sigma"] >= 0).all() and (seen["history_sigma"] <= 0.2).all()
    level = seen["history_sigma"].repeat_interleave(1, 1)[..., None, None, None]
    assert (seen["history"] - (1 - level) * x0).abs().amax() <= 0.2 * 6  # x0 lightly noised, not replaced
    assert logs["reward_loss"] == pytest.approx(40.0 / 6, rel=1e-4)  # one of six wrong by a logit gap of 40


@pytest.mark.parametrize("prediction", ["x0", "velocity"])
def test_self_history_shows_the_next_chunk_the_models_own_sample_of_its_history(prediction):
    calls = []

    class Model:  # outputs its input halved (as x0 or as v, a one-pass sample from noise is then the noise halved)
        config = SimpleNamespace(patch=(1, 2, 2), reward_values=())

        def __call__(self, x, sigma, actions, history=None, history_sigma=None):
            calls.append((torch.is_grad_enabled(), sigma.clone(), history))
            b, n = sigma.shape
            return SimpleNamespace(out=x / 2, reward=torch.zeros(b, n), terminated_logit=torch.zeros(b, n))

    x0 = torch.randn(4, 6, 2, 4, 4)
    z = torch.zeros(4, 6)
    gen = torch.Generator().manual_seed(0)
    cfg = DiffusionConfig(history="clean", self_history=1.0, prediction=prediction)
    training_loss(Model(), x0, torch.zeros(4, 6, dtype=torch.long), z, z, cfg, gen)
    (grad_own, sigma_own, shown_own), (_, _, shown) = calls
    assert not grad_own and (sigma_own == 1).all() and torch.equal(shown_own, x0)  # no grad, from noise, real past
    assert torch.equal(shown[:, 0], x0[:, 0])  # a clip's first frame has nothing to be predicted from: real
    assert not torch.isclose(shown[:, 1:], x0[:, 1:]).any()  # every later frame is the model's own sample
    calls.clear()  # at 0: no extra pass, the real clip shown
    training_loss(Model(), x0, torch.zeros(4, 6, dtype=torch.long), z, z,
                  DiffusionConfig(history="clean", prediction=prediction), torch.Generator().manual_seed(0))
    assert len(calls) == 1 and torch.equal(calls[0][2], x0)


def test_history_dropout_shortens_a_share_of_the_histories_to_the_window():
    seen = {}

    def model(x, sigma, actions, history, history_sigma, **kw):
        seen.update(kw)
        b, n = sigma.shape
        return SimpleNamespace(out=torch.zeros_like(x), reward=torch.zeros(b, n), terminated_logit=torch.zeros(b, n))

    x0, z = torch.zeros(64, 50, 1, 2, 2), torch.zeros(64, 50)
    actions = torch.zeros(64, 50, dtype=torch.long)
    training_loss(model, x0, actions, z, z, DiffusionConfig(history="clean"), torch.Generator().manual_seed(1))
    assert "recent" not in seen  # off: the whole history, the model's own default
    cfg = DiffusionConfig(history="clean", history_dropout=0.3, history_dropout_window=3)
    training_loss(model, x0, actions, z, z, cfg, torch.Generator().manual_seed(1), rows=slice(0, 32))
    recent = seen["recent"]
    assert recent.shape == (32, 50) and not recent.is_floating_point()
    assert 0.25 <= (recent > 0).float().mean().item() <= 0.35
    assert set(recent[recent > 0].tolist()) == {1, 2, 3}
    with pytest.raises(ValueError, match=r"history_dropout=0.3: expected a probability in \[0, 1\), above 0 only "
                                         "with history='clean'"):
        DiffusionConfig(history_dropout=0.3)
    with pytest.raises(ValueError, match=r"history_dropout_window=0: expected an integer >= 1"):
        DiffusionConfig(history="clean", history_dropout=0.3, history_dropout_window=0)


def test_action_dropout_hides_a_share_of_the_actions_and_nothing_else():
    seen = {}

    def model(x, sigma, actions):
        seen["actions"] = actions
        b, n = sigma.shape
        return SimpleNamespace(out=torch.zeros_like(x), reward=torch.zeros(b, n), terminated_logit=torch.zeros(b, n))

    actions = torch.randint(0, 12, (64, 50), generator=torch.Generator().manual_seed(0))
    x0 = torch.zeros(64, 50, 1, 2, 2)
    for p, low, high in ((0.0, 0.0, 0.0), (0.2, 0.17, 0.23)):
        training_loss(model, x0, actions, torch.zeros(64, 50), torch.zeros(64, 50), DiffusionConfig(action_dropout=p),
                      torch.Generator().manual_seed(1))
        hidden = seen["actions"] == -1
        assert low <= hidden.float().mean().item() <= high
        assert torch.equal(seen["actions"][~hidden], actions[~hidden])  # the others are the real ones
    with pytest.raises(ValueError, match=r"action_dropout=1.0: expected a probability in \[0, 1\)"):
        DiffusionConfig(action_dropout=1.0)
    with pytest.raises(ValueError, match=r"action_guidance=-1.0: expected a finite scale >= 0"):
        DiffusionConfig(action_guidance=-1.0)
    with pytest.raises(ValueError, match=r"history_guidance=-1.0: expected a finite scale >= 0"):
        DiffusionConfig(history_guidance=-1.0)
    with pytest.raises(ValueError, match=r"history_window=0: expected an integer >= 1"):
        DiffusionConfig(history_window=0)


def test_action_balance_weighs_each_frame_by_its_actions_rarity():
    from worldsim.train.world import action_weights_of

    shard = SimpleNamespace(arrays={"actions": np.array([-1, 0, 0, 0, 1, -1, 0, 0, 0, 0])})  # 7 x action 0, 1 x 1
    data = [SimpleNamespace(shards=[shard])]
    w = action_weights_of(data, 3, 1.0)
    freq = np.array([7, 1, 0]) / 8
    assert torch.allclose(w[:2], torch.tensor([1 / 7, 1.0]) / (2 / 8))  # every action alike in all ...
    assert np.isclose((freq * w.numpy()).sum(), 1.0) and w[2] == w[1]  # ... a frame 1 on average; unseen: the rarest
    assert torch.allclose(action_weights_of(data, 3, 0.0), torch.ones(3))

    errs = {}

    def model(x, sigma, actions):  # the same error on every frame: the weights alone make the loss
        b, n = sigma.shape
        return SimpleNamespace(out=torch.ones_like(x), reward=torch.zeros(b, n), terminated_logit=torch.zeros(b, n))

    x0 = torch.zeros(1, 4, 1, 2, 2)
    actions = torch.tensor([[-1, 0, 1, 1]])
    for name, table in (("plain", None), ("weighted", torch.tensor([1.0, 3.0, 1.0]))):
        _, logs = training_loss(model, x0, actions, torch.zeros(1, 4), torch.zeros(1, 4), DiffusionConfig(),
                                torch.Generator().manual_seed(0), action_weights=table)
        errs[name] = logs["denoise_loss"]
    assert errs["weighted"] == pytest.approx(errs["plain"])  # normalised to mean 1 over the batch

    x0[0, 2:] = 1.0  # the model is now right on the frames of action 1, which weigh 3 + 3 of the 8 parts
    _, logs = training_loss(model, x0, actions, torch.zeros(1, 4), torch.zeros(1, 4), DiffusionConfig(),
                            torch.Generator().manual_seed(0), action_weights=torch.tensor([1.0, 3.0, 1.0]))
    assert logs["denoise_loss"] == pytest.approx(2 / 8)


def _rough_dit(**overrides):
    """A tiny previous-frame DiT with every weight perturbed (test_dit.randomized)."""
    from test_dit import randomized
    from worldsim.models.dit import DiTConfig
    return randomized(DiTConfig(**({"latent_channels": 2, "patch": (1, 2, 2), "width": 24, "depth": 2, "heads": 2,
                                    "n_actions": 3, "context": 8, "prev_frame": True} | overrides)))


@pytest.mark.parametrize("model, t_start", [({}, 0), ({"context": 3, "memory": 1, "memory_stride": 2}, 1)])
def test_self_rollout_samples_the_stretch_as_play_does_each_chunk_from_the_ones_it_rolled_before(model, t_start):
    # and with a window shorter than the clip and a memory beyond it, for a clip that starts mid-way through a world
    from worldsim.models.diffusion import own_rollout
    dit, gen = _rough_dit(**model), torch.Generator().manual_seed(0)
    x0, noise = torch.randn(3, 6, 2, 4, 4, generator=gen), torch.randn(3, 6, 2, 4, 4, generator=gen)
    actions = torch.tensor([[0, 1, 2, 0, 1, 2], [2, 2, 1, 1, 0, 0], [1, 0, 1, 0, 1, 0]])
    rolled = torch.tensor([True, False, True])
    cfg = DiffusionConfig(history="clean", self_rollout=3)
    shown = own_rollout(dit, x0, noise, rolled, 2, 5, actions, cfg, t_start)
    # the reference: each chunk of the stretch sampled by the whole-clip forward pass, against the chunks shown before
    want = x0.clone()
    for i in range(2, 5):
        def velocity(x, s):
            clip, sigma = want[:, :i + 1].clone(), torch.zeros(3, i + 1)
            clip[:, i:i + 1], sigma[:, i] = x, s
            out = dit(clip, sigma, actions[:, :i + 1], t_start, history=want[:, :i + 1],
                      history_sigma=torch.zeros(3, i + 1))
            return to_velocity(out.out[:, i:i + 1], x, s, cfg.prediction)
        own = sample(velocity, noise[:, i:i + 1], cfg.denoise_steps, cfg.shift)
        want[rolled, i:i + 1] = own[rolled]
    assert torch.allclose(shown, want, atol=1e-4)
    assert torch.equal(shown[~rolled], x0[~rolled])  # a row not rolled is shown its real clip
    assert torch.equal(shown[:, :2], x0[:, :2]) and torch.equal(shown[:, 5:], x0[:, 5:])  # only the stretch rolled
    assert (shown[rolled, 2:5] - x0[rolled, 2:5]).abs().mean() > 0.1  # it is the model's, not the data
    # the second rolled chunk follows the first rolled one: sampled against the real chunk 2 it comes out otherwise
    real = own_rollout(dit, x0, noise, rolled, 3, 4, actions, cfg, t_start)
    assert not torch.allclose(real[rolled, 3], shown[rolled, 3], atol=1e-3)


def test_self_rollout_trains_the_clips_split_over_processes_as_one_process_does():
    dit = _rough_dit()
    x0, actions = torch.randn(4, 6, 2, 4, 4), torch.randint(0, 3, (4, 6))
    z = torch.zeros(4, 6)
    cfg = DiffusionConfig(history="clean", self_rollout=4, self_rollout_share=0.5)
    whole, _ = training_loss(dit, x0, actions, z, z, cfg, torch.Generator().manual_seed(3))
    halves = [training_loss(dit, x0, actions, z, z, cfg, torch.Generator().manual_seed(3), rows)[0]
              for rows in (slice(0, 2), slice(2, 4))]
    assert torch.isclose(whole, sum(halves) / 2, rtol=1e-5)
    plain, _ = training_loss(dit, x0, actions, z, z, DiffusionConfig(history="clean"), torch.Generator().manual_seed(3))
    assert not torch.isclose(whole, plain)  # the rolled history changes what the model is asked
    whole.backward()
    assert all(p.grad is not None for p in dit.blocks.parameters())
