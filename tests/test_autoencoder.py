"""Autoencoder: shapes at every frame size and downsample, errors that name the value, the latent scale in the state
dict, normalisation, and a tiny model that learns Craft2D frames."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from worldsim.models.autoencoder import Autoencoder, AutoencoderConfig, ResBlock, psnr

SIZES = [(64, 64), (96, 64), (64, 96)]


def tiny(seed: int = 0, **kw) -> Autoencoder:
    torch.manual_seed(seed)
    cfg = dict(width=8, latent_channels=4, channel_mult=(1, 2, 2, 2), head_width=32)
    ae = Autoencoder(AutoencoderConfig(**{**cfg, **kw}))
    ae.initialize_weights()
    return ae


def frames(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def craft_frames() -> np.ndarray:
    """Eight Craft2D frames (64x64) from a random walk."""
    env = gym.make("worldsim/Craft2D-v0", world_width=64)
    obs, _ = env.reset(seed=3)
    rng, out = np.random.default_rng(3), [obs]
    while len(out) < 8:
        for _ in range(5):
            obs, _, term, trunc, _ = env.step(int(rng.integers(env.action_space.n)))
            if term or trunc:
                obs, _ = env.reset()
        out.append(obs)
    env.close()
    return np.stack(out)  # (8, 64, 64, 3)


# ---- shapes ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stem", [2, 8])
@pytest.mark.parametrize("downsample", [8, 16])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_shapes(downsample, size, stem):
    H, W = size
    ae = tiny(downsample=downsample, stem=stem)
    f = downsample
    with torch.no_grad():
        z = ae.encode(frames(3, H, W))
        assert z.shape == (3, 4, H // f, W // f) and z.dtype == torch.float32
        zt = ae.encode(frames(2, 3, H, W))  # (B, T, ...) keeps its time axis
        assert zt.shape == (2, 3, 4, H // f, W // f)
        x = ae.decode(zt)
        assert x.shape == (2, 3, 3, H, W) and x.min() >= 0 and x.max() <= 1
        u = ae.decode_uint8(z)
        assert u.shape == (3, H, W, 3) and u.dtype == torch.uint8


def test_time_axis_is_the_same_as_flattening():
    ae = tiny()
    x = frames(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ae.encode(x).reshape(6, 4, 8, 8), ae.encode(x.reshape(6, 64, 64, 3)), atol=1e-5)


def test_numpy_frames_are_accepted():
    ae = tiny()
    x = frames(2, 64, 64)
    with torch.no_grad():
        assert torch.equal(ae.encode(x.numpy()), ae.encode(x))


# ---- errors ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [4, 12, 32])
def test_bad_downsample_names_it(bad):
    with pytest.raises(ValueError, match=f"downsample={bad}"):
        AutoencoderConfig(downsample=bad)


def test_too_few_channel_multipliers_named():
    with pytest.raises(ValueError, match="channel_mult"):
        AutoencoderConfig(downsample=16, stem=1, channel_mult=(1, 2))


@pytest.mark.parametrize("downsample, size", [(8, (60, 64)), (8, (64, 68)), (16, (64, 72)), (16, (40, 64))])
def test_bad_frame_size_names_it(downsample, size):
    ae = tiny(downsample=downsample)
    with pytest.raises(ValueError, match=f"{size[0]}x{size[1]}.*downsample={downsample}"):
        ae.encode(frames(1, *size))


def test_bad_frames_dtype_or_layout_named():
    ae = tiny()
    with pytest.raises(ValueError, match="uint8"):
        ae.encode(torch.zeros(1, 64, 64, 3))  # float frames
    with pytest.raises(ValueError, match=r"\(1, 3, 64, 64\)"):
        ae.encode(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))  # channels first
    with pytest.raises(ValueError, match="latents of shape"):
        ae.decode(torch.zeros(1, 5, 8, 8))  # wrong latent channels


# ---- the latent scale --------------------------------------------------------------------------------------------
def test_latent_scale_lives_in_the_state_dict_and_round_trips():
    ae = tiny()
    assert not ae.stats_fitted
    with torch.no_grad():
        ae.fit_latent_stats(ae.encode_raw(frames(16, 64, 64)))
    assert ae.stats_fitted
    state = ae.state_dict()
    assert torch.equal(state["latent_mean"], ae.latent_mean) and torch.equal(state["latent_std"], ae.latent_std)
    other = tiny(seed=1)  # other weights, identity scale
    other.load_state_dict(state)
    assert torch.equal(other.latent_mean, ae.latent_mean) and torch.equal(other.latent_std, ae.latent_std)
    x = frames(2, 64, 64, seed=5)
    with torch.no_grad():
        assert torch.equal(other.encode(x), ae.encode(x))


def test_fitted_latents_have_zero_mean_unit_std_per_channel(craft_frames):
    ae = tiny()
    x = np.concatenate([craft_frames, frames(8, 64, 64).numpy()])
    with torch.no_grad():
        raw = ae.encode_raw(x)
        assert (raw.mean((0, 2, 3)).abs() > 0.05).any() or ((raw.std((0, 2, 3)) - 1).abs() > 0.05).any()
        ae.fit_latent_stats(raw)
        z = ae.encode(x)  # (N, C, h, w)
    assert torch.allclose(z.mean((0, 2, 3)), torch.zeros(4), atol=1e-4)
    assert torch.allclose(z.std((0, 2, 3)), torch.ones(4), atol=1e-3)
    with torch.no_grad():  # and decode undoes the scale: the decoder sees what it saw before the fit
        assert torch.allclose(ae.decoder(raw), ae._decode_raw(z), atol=1e-4)


# ---- weights and training ----------------------------------------------------------------------------------------
def test_initialize_weights_starts_residual_blocks_as_identity():
    ae = tiny()
    blocks = [m for m in ae.modules() if isinstance(m, ResBlock)]
    assert blocks and all(not b.conv2.weight.any() for b in blocks)
    assert ae.num_params() == sum(p.numel() for p in ae.parameters()) > 0


def test_loss_logs_and_gradients():
    ae = tiny()
    loss, logs = ae.loss(frames(4, 64, 64))
    assert set(logs) >= {"loss", "l1", "mse", "psnr"} and all(isinstance(v, float) for v in logs.values())
    assert loss.item() == pytest.approx(logs["loss"])
    loss.backward()
    assert ae.encoder.conv_in.weight.grad.abs().sum() > 0 and ae.decoder.conv_out.weight.grad.abs().sum() > 0


def test_latent_noise_only_in_training_loss():
    ae = tiny(latent_noise=0.5)
    x = frames(2, 64, 64)
    torch.manual_seed(0)
    a = ae.loss(x)[0].item()
    torch.manual_seed(1)
    b = ae.loss(x)[0].item()
    assert a != b  # noisy
    with torch.no_grad():
        assert torch.equal(ae.decode(ae.encode(x)), ae.decode(ae.encode(x)))  # the maps themselves are not


def test_tiny_autoencoder_overfits_craft_frames(craft_frames):
    """PSNR of the reconstruction rises by more than 10 dB in under a hundred steps on 8 frames (~9 -> ~22 dB)."""
    torch.manual_seed(0)
    ae = Autoencoder(AutoencoderConfig(width=16, stem=8, channel_mult=(2,), head_width=128, latent_noise=0.0))
    ae.initialize_weights()
    x = torch.from_numpy(craft_frames)
    target = x.permute(0, 3, 1, 2).float() / 255  # (N, 3, H, W)

    def quality() -> float:
        with torch.no_grad():
            return psnr((ae.decode(ae.encode(x)) - target).square().mean()).item()

    before = quality()
    opt = torch.optim.Adam(ae.parameters(), lr=1e-2)
    for _ in range(80):
        loss, _ = ae.loss(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = quality()
    assert after > before + 10, f"PSNR {before:.1f} dB -> {after:.1f} dB"


def test_hard_cells_add_their_own_loss():
    x = frames(2, 64, 64)
    plain, hard = tiny(latent_noise=0.0, hard_weight=0.0), tiny(latent_noise=0.0, hard_weight=1.0)
    hard.load_state_dict(plain.state_dict())
    loss_plain, logs = plain.loss(x)
    loss_hard, _ = hard.loss(x)
    # the worst 5% of 8x8 cells weigh in again: the hard loss is the plain one plus their mean, which is >= the mean
    assert loss_hard.item() >= loss_plain.item() + logs["l1"] + logs["mse"] - 1e-6
    with pytest.raises(ValueError, match="hard_fraction=0"):
        AutoencoderConfig(hard_fraction=0.0)
