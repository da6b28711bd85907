"""The diffusion transformer: patches, block-causal sliding-window attention, the KV cache, sizes, presets."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch

from worldsim.models.dit import (DIT_PRESETS, Condition, DiT, DiTConfig, apply_rope, dit_config, halo_patches,
                                 patchify, rope_tables, unpatchify)

C = 4  # latent channels of the tiny test models


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from threads, and on a shared CPU their spinning makes steps 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(**overrides) -> DiTConfig:
    kw = dict(latent_channels=C, width=32, depth=2, heads=2, n_actions=5, context=4)
    return DiTConfig(**(kw | overrides))


def randomized(cfg: DiTConfig, seed: int = 0) -> DiT:
    """A model with every weight perturbed: adaLN-Zero would otherwise make the output identically 0."""
    torch.manual_seed(seed)
    model = DiT(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def inputs(cfg: DiTConfig, b=2, chunks=5, h=4, w=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, chunks * cfg.patch[0], cfg.latent_channels, h, w, generator=g)
    sigma = torch.rand(b, chunks, generator=g)
    actions = torch.randint(-1, cfg.n_actions, (b, chunks), generator=g)
    return x, sigma, actions


# --- patches ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("hw", [(8, 8), (8, 12), (12, 8)])  # 64x64, 96x64 (h x w = 12 x 8) and 64x96 frames at f=8
@pytest.mark.parametrize("patch", [(1, 2, 2), (2, 2, 2), (2, 4, 2)])
def test_patchify_round_trip(hw, patch):
    h, w = hw
    x = torch.randn(2, 4, 8, h, w)
    tokens = patchify(x, patch)
    pt, ph, pw = patch
    assert tokens.shape == (2, 4 // pt, (h // ph) * (w // pw), pt * ph * pw * 8)
    assert torch.equal(unpatchify(tokens, patch, 8, h, w), x)
    # a token is one contiguous (pt, ph, pw) block of the latents: the first one is the top-left patch of chunk 0
    assert torch.equal(tokens[0, 0, 0], x[0, :pt, :, :ph, :pw].permute(0, 2, 3, 1).reshape(-1))


def test_patchify_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r"\(2, 4, 8, 7, 8\)"):
        patchify(torch.randn(2, 4, 8, 7, 8), (1, 2, 2))
    with pytest.raises(ValueError, match=r"\(2, 3, 8, 8, 8\)"):
        patchify(torch.randn(2, 3, 8, 8, 8), (2, 2, 2))
    with pytest.raises(ValueError, match="5 dims"):
        patchify(torch.randn(4, 8, 8, 8), (1, 2, 2))
    with pytest.raises(ValueError, match=r"\(2, 4, 16, 32\)"):
        unpatchify(torch.randn(2, 4, 16, 32), (1, 2, 2), 8, 8, 12)
    model = DiT(tiny())
    x, sigma, actions = inputs(tiny(), h=5)
    with pytest.raises(ValueError, match=r"\(2, 5, 4, 5, 6\)"):
        model(x, sigma, actions)


# --- block-causal, sliding-window attention ---------------------------------------------------------------------

@pytest.mark.parametrize("what", ["latent", "sigma", "action"])
def test_later_chunks_do_not_change_earlier_ones(what):
    cfg = tiny(context=8)
    model = randomized(cfg)
    x, sigma, actions = inputs(cfg, chunks=5)
    x2, sigma2, actions2 = x.clone(), sigma.clone(), actions.clone()
    t = 2
    if what == "latent":
        x2[:, t + 1] += 1.0
    elif what == "sigma":
        sigma2[:, t + 1] = 1.0 - sigma2[:, t + 1]
    else:
        actions2[:, t + 1] = (actions2[:, t + 1] + 2) % cfg.n_actions
    with torch.no_grad():
        a, b = model(x, sigma, actions), model(x2, sigma2, actions2)
    for field in ("out", "reward", "terminated_logit"):
        before, after = getattr(a, field)[:, :t + 1], getattr(b, field)[:, :t + 1]
        torch.testing.assert_close(after, before, atol=1e-5, rtol=0)
        assert (getattr(a, field)[:, t + 1] - getattr(b, field)[:, t + 1]).abs().max() > 1e-4, field


@pytest.mark.parametrize("depth", [1, 2])
def test_sliding_window(depth):
    """context=2: each layer looks one chunk back, so chunk 0 reaches chunk `depth` and no further (as in any
    sliding-window transformer; the KV cache reproduces it exactly, see below)."""
    cfg = tiny(context=2, depth=depth)
    model = randomized(cfg)
    x, sigma, actions = inputs(cfg, chunks=4)
    x2 = x.clone()
    x2[:, 0] += 1.0
    with torch.no_grad():
        a, b = model(x, sigma, actions), model(x2, sigma, actions)
    assert (a.out[:, depth] - b.out[:, depth]).abs().max() > 1e-4
    torch.testing.assert_close(b.out[:, depth + 1:], a.out[:, depth + 1:], atol=1e-5, rtol=0)
    torch.testing.assert_close(b.reward[:, depth + 1:], a.reward[:, depth + 1:], atol=1e-5, rtol=0)


def test_rotary_positions_are_relative():
    hs = 24
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 30, hs, generator=g), torch.randn(1, 1, 30, hs, generator=g)
    pos_q, pos_k = torch.randint(0, 20, (30, 3), generator=g), torch.randint(0, 20, (30, 3), generator=g)
    shift = torch.tensor([100_000, 3, 5])  # a long episode: absolute t far beyond anything seen in training

    def scores(dq, dk):
        rq, rk = rope_tables(pos_q + dq, hs, 10000.0), rope_tables(pos_k + dk, hs, 10000.0)
        return (apply_rope(q, *rq) * apply_rope(k, *rk)).sum(-1)  # (1, 1, 30) per-pair dot products

    torch.testing.assert_close(scores(shift, shift), scores(0, 0), atol=1e-5, rtol=1e-5)
    assert (scores(shift, 0) - scores(0, 0)).abs().max() > 1e-2  # and they do see relative position
    rotated = apply_rope(q, *rope_tables(pos_q + shift, hs, 10000.0))
    torch.testing.assert_close(rotated.norm(dim=-1), q.norm(dim=-1), atol=0, rtol=1e-5)  # a rotation
    model = randomized(tiny())
    x, sigma, actions = inputs(tiny(), chunks=3)
    with torch.no_grad():
        torch.testing.assert_close(model(x, sigma, actions, t_start=12_345).out, model(x, sigma, actions).out,
                                   atol=1e-4, rtol=0)


# --- the KV cache -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("patch", [(1, 2, 2), (2, 2, 2)])
def test_kv_cache_matches_full_forward(patch):
    cfg = tiny(patch=patch, context=3)
    model = randomized(cfg)
    chunks, pt = 7, patch[0]  # longer than the window: the ring evicts
    x, sigma, actions = inputs(cfg, chunks=chunks, h=4, w=6)
    with torch.no_grad():
        full = model(x, sigma, actions)
    solver, single = model.new_cache(2), model.new_cache(2)
    for i in range(chunks):
        chunk = x[:, i * pt:(i + 1) * pt]
        for _ in range(2):  # solver steps on other (noisy) inputs must leave no trace
            model.forward_chunk(torch.randn_like(chunk), torch.rand(2), actions[:, i], i, solver)
        got = model.forward_chunk(chunk, sigma[:, i], actions[:, i], i, solver, write=True)
        ref = model.forward_chunk(chunk, sigma[:, i], actions[:, i], i, single, write=True)
        torch.testing.assert_close(got.out, full.out[:, i * pt:(i + 1) * pt], atol=1e-4, rtol=0)
        torch.testing.assert_close(got.reward, full.reward[:, i:i + 1], atol=1e-4, rtol=0)
        torch.testing.assert_close(got.terminated_logit, full.terminated_logit[:, i:i + 1], atol=1e-4, rtol=0)
        torch.testing.assert_close(got.out, ref.out, atol=1e-6, rtol=0)
    n = (4 // 2) * (6 // 2)
    assert solver.k[0].shape == (2, cfg.heads, cfg.context * n, cfg.width // cfg.heads)
    assert solver.lengths.tolist() == [cfg.context - 1] * 2


@pytest.mark.parametrize("cfg", [tiny(context=4), tiny(context=4, prev_frame=True), tiny(context=3, memory=2,
                                                                                      memory_stride=2)],
                         ids=["plain", "prev_frame", "memory"])
def test_conditions_in_one_call_equal_one_pass_each(cfg):
    """forward_conditions runs guidance's passes as one call: each conditioning's result is the pass forward_chunk
    makes under it alone, and one that sees the latest `recent` cached chunks is the pass against a cache holding only
    those (no memory); the cache afterwards is as one plain pass leaves it."""
    model = randomized(cfg)
    chunks = 8
    x, sigma, actions = inputs(cfg, chunks=chunks)
    cache = model.new_cache(2)
    for i in range(chunks):
        chunk = x[:, i:i + 1]
        conditions = [Condition(actions[:, i]), Condition(-1), Condition(actions[:, i], recent=2)]
        got = model.forward_conditions(chunk, sigma[:, i], conditions, i, cache)
        for c, out in zip(conditions[:2], got):
            ref = model.forward_chunk(chunk, sigma[:, i], c.actions, i, cache)
            torch.testing.assert_close(out.out, ref.out, atol=1e-5, rtol=0)
            torch.testing.assert_close(out.reward, ref.reward, atol=1e-5, rtol=0)
        short = copy.deepcopy(cache)
        short.lengths.clamp_(max=2)
        short.memory_lengths.zero_()
        ref = model.forward_chunk(chunk, sigma[:, i], actions[:, i], i, short)
        torch.testing.assert_close(got[2].out, ref.out, atol=1e-5, rtol=0)
        model.forward_chunk(chunk, sigma[:, i], actions[:, i], i, cache, write=True)
    assert (got[2].out - got[0].out).abs().amax() > 1e-3  # more than 2 chunks (or a memory) held: they differ
    with torch.no_grad():
        full = model(x, sigma, actions)  # the write passes after every multi-conditioning call, as if none ran
    torch.testing.assert_close(got[0].out, full.out[:, -1:], atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match=r"recent=\(None, 0\): expected None"):
        model.forward_conditions(x[:, :1], 0.5, [Condition(1), Condition(1, recent=0)], chunks, cache)


def test_reset_rows_starts_a_row_afresh():
    cfg = tiny(context=3)
    model = randomized(cfg)
    x, sigma, actions = inputs(cfg, chunks=6)
    cache = model.new_cache(2)
    with torch.no_grad():
        full = model(x, sigma, actions)
        fresh = model(x[:1, 3:], sigma[:1, 3:], actions[:1, 3:])  # row 0's episode restarted at chunk 3
    for i in range(6):
        if i == 3:
            cache.reset_rows(np.array([True, False]))
        got = model.forward_chunk(x[:, i:i + 1], sigma[:, i], actions[:, i], i, cache, write=True)
        if i >= 3:  # t_index keeps counting: only differences matter
            torch.testing.assert_close(got.out[0], fresh.out[0, i - 3:i - 2], atol=1e-4, rtol=0)
        torch.testing.assert_close(got.out[1], full.out[1, i:i + 1], atol=1e-4, rtol=0)
    cache.reset()
    assert cache.lengths.tolist() == [0, 0]
    got = model.forward_chunk(x[:, :1], sigma[:, 0], actions[:, 0], 40, cache)
    torch.testing.assert_close(got.out, full.out[:, :1], atol=1e-4, rtol=0)


def test_reach_is_the_window_and_the_strided_memory_before_it():
    from worldsim.models.attend import reach

    q = torch.tensor(20)
    seen = [k for k in range(21) if reach(q, torch.tensor(k), context=4, memory=3, stride=3)]
    assert seen == [9, 12, 15, 17, 18, 19, 20]  # 3 multiples of 3 that left the window (17-20), then the window
    assert [k for k in range(21) if reach(q, torch.tensor(k), context=4)] == [17, 18, 19, 20]


@pytest.mark.parametrize("t_start", [0, 2])
def test_kv_cache_with_a_memory_matches_full_forward(t_start):
    """The cache keeps, beyond the window, the latest `memory` chunks that left it whose absolute index is a multiple
    of the stride: exactly what the full forward's mask lets each chunk see, at any phase of the stride."""
    cfg = tiny(context=3, memory=2, memory_stride=3)
    model = randomized(cfg)
    chunks = 16  # the memory fills, then evicts its oldest
    x, sigma, actions = inputs(cfg, chunks=chunks)
    with torch.no_grad():
        full = model(x, sigma, actions, t_start=t_start)
        windowed = DiT(replace(cfg, memory=0)).eval()
        windowed.load_state_dict(model.state_dict())
        plain = windowed(x, sigma, actions, t_start=t_start)
    cache = model.new_cache(2)
    for i in range(chunks):
        model.forward_chunk(torch.randn_like(x[:, i:i + 1]), torch.rand(2), actions[:, i], t_start + i, cache)
        got = model.forward_chunk(x[:, i:i + 1], sigma[:, i], actions[:, i], t_start + i, cache, write=True)
        torch.testing.assert_close(got.out, full.out[:, i:i + 1], atol=1e-4, rtol=0)
    assert cache.memory_lengths.tolist() == [2, 2]
    n = (4 // 2) * (6 // 2)
    assert cache.k[0].shape == (2, cfg.heads, (cfg.context + cfg.memory) * n, cfg.width // cfg.heads)
    assert (full.out[:, 3:] - plain.out[:, 3:]).abs().amax() > 1e-3  # the memory is seen once it holds a chunk
    torch.testing.assert_close(full.out[:, :3], plain.out[:, :3], atol=1e-5, rtol=0)  # and not before


def test_reset_rows_empties_a_rows_memory():
    cfg = tiny(context=2, memory=2, memory_stride=2)
    model = randomized(cfg)
    x, sigma, actions = inputs(cfg, chunks=12)
    cache = model.new_cache(2)
    with torch.no_grad():
        full = model(x, sigma, actions)
        fresh = model(x[:1, 5:], sigma[:1, 5:], actions[:1, 5:], t_start=5)  # row 0 restarted at chunk 5
    for i in range(12):
        if i == 5:
            cache.reset_rows(np.array([True, False]))
        got = model.forward_chunk(x[:, i:i + 1], sigma[:, i], actions[:, i], i, cache, write=True)
        if i >= 5:
            torch.testing.assert_close(got.out[0], fresh.out[0, i - 5:i - 4], atol=1e-4, rtol=0)
        torch.testing.assert_close(got.out[1], full.out[1, i:i + 1], atol=1e-4, rtol=0)


def test_cache_refuses_other_batch_and_size_until_cleared():
    cfg = tiny()
    model = randomized(cfg)
    cache = model.new_cache(2)
    model.forward_chunk(torch.randn(2, 1, C, 4, 4), 0.0, 0, 0, cache, write=True)
    with pytest.raises(ValueError, match="batch size 2"):
        model.forward_chunk(torch.randn(3, 1, C, 4, 4), 0.0, 0, 1, cache)
    with pytest.raises(ValueError, match="clear"):
        model.forward_chunk(torch.randn(2, 1, C, 4, 6), 0.0, 0, 1, cache)
    cache.clear()
    assert model.forward_chunk(torch.randn(2, 1, C, 4, 6), 0.0, 0, 1, cache).out.shape == (2, 1, C, 4, 6)


# --- sizes, training, presets, conditioning ---------------------------------------------------------------------

def test_same_weights_run_at_every_frame_size():
    cfg = tiny(latent_channels=8)
    model = randomized(cfg)
    for h, w in [(8, 8), (12, 8), (8, 12)]:  # latents of 64x64, 96x64 and 64x96 frames
        x, sigma, actions = inputs(cfg, chunks=3, h=h, w=w)
        out = model(x, sigma, actions)
        assert out.out.shape == x.shape and out.reward.shape == out.terminated_logit.shape == (2, 3)
        assert torch.isfinite(out.out).all()


def test_fresh_model_predicts_zero():
    cfg = tiny()
    x, sigma, actions = inputs(cfg)
    out = DiT(cfg)(x, sigma, actions)
    assert torch.equal(out.out, torch.zeros_like(x))  # adaLN-Zero and a zero output layer
    assert torch.isfinite(out.reward).all() and torch.isfinite(out.terminated_logit).all()


def test_tiny_model_overfits_a_tiny_batch():
    torch.manual_seed(0)
    cfg = tiny(width=48, heads=2, depth=2)
    model = DiT(cfg)
    x, sigma, actions = inputs(cfg, chunks=4, h=4, w=4)
    target = torch.randn_like(x)
    reward = torch.randn(2, 4)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(120):
        out = model(x, sigma, actions)
        loss = torch.nn.functional.mse_loss(out.out, target) + torch.nn.functional.mse_loss(out.reward, reward)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])


def test_presets_scale_compute():
    s, m, l = (DiT(DIT_PRESETS[k]).num_params() for k in "SML")
    # the same patch size, so the same tokens per frame: compute per clip ~ parameters
    assert 3 < m / s < 6 and 12 < l / s < 24, (s, m, l)
    assert dit_config("M", n_actions=7, latent_channels=16).n_actions == 7
    with pytest.raises(ValueError, match="'XL'.*'L', 'M', 'S'"):
        dit_config("XL")
    with pytest.raises(ValueError, match="widht"):
        dit_config("S", widht=3)
    with pytest.raises(ValueError, match="head_dim"):
        DiTConfig(width=100, heads=3)


@pytest.mark.parametrize("field, value, message", [
    ("heads", 0, r"heads=0: expected an integer >= 1"),
    ("depth", 0, r"depth=0: expected an integer >= 1"),
    ("context", 0, r"context=0: expected an integer >= 1"),
    ("n_actions", 0, r"n_actions=0: expected an integer >= 1"),
    ("mlp_ratio", -1.0, r"mlp_ratio=-1.0: expected > 0"),
    ("rope_base", 0.0, r"rope_base=0.0: expected > 1"),
])
def test_bad_sizes_are_refused_naming_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        tiny(**{field: value})


def test_the_caption_prefix_is_gone():
    """max_extra_tokens and the extra prefix were never used: a config with them is an error, not ignored."""
    with pytest.raises(TypeError, match="max_extra_tokens"):
        DiTConfig(max_extra_tokens=0)
    assert "extra_cond" not in DiT(tiny()).state_dict()


def test_actions_and_noise_levels_are_checked():
    cfg = tiny()
    model = randomized(cfg)
    x, sigma, actions = inputs(cfg, chunks=3)
    with torch.no_grad():
        base = model(x, sigma, actions.fill_(-1))
        assert (model(x, sigma, actions.fill_(0)).out - base.out).abs().max() > 1e-4  # -1 has its own embedding
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        model(x, sigma, actions.fill_(5))
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        model(x, sigma[:, :2], actions.fill_(0))


# --- training against a clean history, the previous frame as input, reward classes ---------------------------------

@pytest.mark.parametrize("prev_frame, memory, t_start, halo", [(False, 0, 0, 0), (True, 0, 0, 0), (True, 2, 1, 0),
                                                            (True, 0, 0, 1)])
def test_training_on_a_clean_history_is_what_play_computes(prev_frame, memory, t_start, halo):
    """forward(x, ..., history=h): each noisy chunk against the history chunks before it equals play time, where the
    history is cached chunk by chunk and a solver pass attends to it; also past the window, where the ring evicts,
    and with a memory beyond it."""
    cfg = tiny(context=3, prev_frame=prev_frame, reward_values=(-1.0, 0.0, 1.0), memory=memory, memory_stride=2,
               prev_halo=halo)
    model = randomized(cfg)
    chunks = 6 + 4 * memory
    x, sigma, actions = inputs(cfg, chunks=chunks)
    history, h_sigma, _ = inputs(cfg, chunks=chunks, seed=2)
    with torch.no_grad():
        full = model(x, sigma, actions, history=history, history_sigma=h_sigma, t_start=t_start)
    cache = model.new_cache(2)
    for i in range(chunks):
        got = model.forward_chunk(x[:, i:i + 1], sigma[:, i], actions[:, i], t_start + i, cache)
        torch.testing.assert_close(got.out, full.out[:, i:i + 1], atol=1e-4, rtol=0)
        kept = model.forward_chunk(history[:, i:i + 1], h_sigma[:, i], actions[:, i], t_start + i, cache, write=True)
        torch.testing.assert_close(kept.reward, full.reward[:, i:i + 1], atol=1e-4, rtol=0)
        torch.testing.assert_close(kept.terminated_logit, full.terminated_logit[:, i:i + 1], atol=1e-4, rtol=0)
    assert full.reward.shape == (2, chunks, 3)


@pytest.mark.parametrize("memory", [0, 2])
def test_a_short_history_in_training_is_the_short_pass_of_play(memory):
    """forward(..., recent=r): noisy chunk i against only the latest r[b, i] history chunks (0: all) equals play's
    pass under Condition(recent=r) (None for 0), row by row: history guidance's short pass, learnt in training."""
    cfg = tiny(context=4, prev_frame=True, memory=memory, memory_stride=2)
    model = randomized(cfg)
    chunks = 7 + 4 * memory
    x, sigma, actions = inputs(cfg, chunks=chunks)
    history, h_sigma, _ = inputs(cfg, chunks=chunks, seed=2)
    recent = torch.randint(0, 4, (2, chunks), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = model(x, sigma, actions, history=history, history_sigma=h_sigma, recent=recent)
        whole = model(x, sigma, actions, history=history, history_sigma=h_sigma)
    cache = model.new_cache(2)
    for i in range(chunks):
        got = model.forward_conditions(x[:, i:i + 1], sigma[:, i], [Condition(actions[:, i], recent=r or None)
                                                                      for r in range(4)], i, cache)
        for row in range(2):
            want = got[int(recent[row, i])].out[row]
            torch.testing.assert_close(full.out[row, i:i + 1], want, atol=1e-4, rtol=0)
        model.forward_chunk(history[:, i:i + 1], h_sigma[:, i], actions[:, i], i, cache, write=True)
    held = torch.arange(chunks).clamp(max=cfg.context - 1)  # (T,) history chunks in chunk i's window
    short = (recent > 0) & (recent < held)  # it leaves out one the whole history sees
    assert short.sum() >= 4 and ((full.out - whole.out).abs().flatten(2).amax(-1)[short] > 1e-3).all()
    torch.testing.assert_close(full.out[recent == 0], whole.out[recent == 0], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"recent of shape \(2, 3\): expected history chunks >= 0"):
        model(x, sigma, actions, history=history, history_sigma=h_sigma, recent=recent[:, :3])
    with pytest.raises(ValueError, match="recent without history"):
        model(x, sigma, actions, recent=recent)


def test_the_history_changes_what_a_chunk_is_denoised_against():
    cfg = tiny(context=3)
    model = randomized(cfg)
    x, sigma, actions = inputs(cfg, chunks=4)
    history, h_sigma, _ = inputs(cfg, chunks=4, seed=2)
    with torch.no_grad():
        a = model(x, sigma, actions, history=history, history_sigma=h_sigma).out
        other = history.clone()
        other[:, 1] += 1.0  # chunk 1 of the history: seen by chunks 2 and 3, not by 0 and 1
        b = model(x, sigma, actions, history=other, history_sigma=h_sigma).out
    assert torch.equal(a[:, :2], b[:, :2])
    assert (a[:, 2:] - b[:, 2:]).abs().amax() > 1e-3


def test_a_prev_frame_model_starts_as_copy_last_frame_and_forgets_it_on_reset():
    """adaLN-Zero zeroes the output layer: at initialisation a prev_frame model predicts its previous frame."""
    cfg = tiny(prev_frame=True)
    model = DiT(cfg).eval()
    x, sigma, actions = inputs(cfg, chunks=3)
    with torch.no_grad():
        out = model(x, sigma, actions).out
        assert torch.equal(out[:, 1:], x[:, :-1]) and torch.equal(out[:, 0], torch.zeros_like(x[:, 0]))
        cache = model.new_cache(2)
        model.forward_chunk(x[:, :1], 0.0, actions[:, 0], 0, cache, write=True)
        assert torch.equal(model.forward_chunk(x[:, 1:2], 0.5, actions[:, 1], 1, cache).out, x[:, :1])
        cache.reset_rows(torch.tensor([True, False]))
        out = model.forward_chunk(x[:, 1:2], 0.5, actions[:, 1], 1, cache).out
    assert torch.equal(out[0], torch.zeros_like(out[0])) and torch.equal(out[1], x[1, :1])


def test_a_halo_shows_each_token_the_cells_around_its_patch():
    """halo_patches tokens come in patchify's order; with a border of one cell a token sees its neighbours' edge cells
    (a one-cell scroll or fall is in its own input), and zeros past the frame's edge."""
    x = torch.randn(2, 4, C, 4, 6)
    for patch in ((1, 2, 2), (2, 2, 1)):
        plain, flat = halo_patches(x, patch, 0), patchify(x, patch)
        assert plain.shape == flat.shape
        torch.testing.assert_close(plain.sort(-1).values, flat.sort(-1).values, rtol=0, atol=0)
    grid = torch.arange(4 * 6, dtype=torch.float32).view(1, 1, 1, 4, 6) + 1  # cell (r, c) holds 6 r + c + 1
    seen = halo_patches(grid, (1, 2, 2), 1)[0, 0]  # (N=6, 16): token n sees a 4x4 square
    assert seen.shape == (6, 16)
    assert set(seen[4].tolist()) == {6 * r + c + 1 for r in range(1, 4) for c in range(1, 5)} | {0.0}  # row 1, col 1
    assert (seen[0] == 0).sum() == 7  # the top-left token: a row and a column past the edge


def test_a_halo_starts_as_the_model_without_one_and_then_reads_its_border():
    """Zero-initialised, the halo changes nothing (a checkpoint without one is a fine-tune's start); trained, a token's
    output depends on previous-frame cells outside its own patch, and only through the halo."""
    base, halo = randomized(tiny(prev_frame=True)), DiT(tiny(prev_frame=True, prev_halo=1)).eval()
    missing = halo.load_state_dict(base.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["halo_embed.bias", "halo_embed.weight"]
    x, sigma, actions = inputs(base.config, chunks=3)
    with torch.no_grad():
        torch.testing.assert_close(halo(x, sigma, actions).out, base(x, sigma, actions).out, rtol=0, atol=0)
        halo.halo_embed.weight.normal_()
        nudged = x.clone()
        nudged[:, 0, :, 2, 2] += 1.0  # a cell of the first chunk outside the top-left token's patch (rows, cols 0-1)
        # attention mixes every token of a chunk, so look where the change enters: the first block's input, the
        # token embeddings, at chunk 1's top-left token (its previous frame: chunk 0)
        def embedding(model, lat):
            got = []
            hook = model.blocks[0].register_forward_pre_hook(lambda _, args: got.append(args[0]))
            model(lat, sigma, actions)
            hook.remove()
            return got[0].view(2, 3, -1, model.config.width)[:, 1, 0]  # (B, D)
        assert (embedding(halo, nudged) - embedding(halo, x)).abs().amax() > 1e-3
        assert torch.equal(embedding(base, nudged), embedding(base, x))


def test_reward_classes_read_as_their_values():
    model = DiT(tiny(reward_values=(-1.0, 0.0, 2.5)))
    logits = torch.tensor([[[0.0, 5.0, 1.0], [9.0, 0.0, 0.0], [0.0, 0.0, 0.1]]])  # (B=1, T=3, K=3)
    assert model.reward_of(logits).tolist() == [[0.0, -1.0, 2.5]]
    plain = DiT(tiny())
    assert torch.equal(plain.reward_of(torch.tensor([[0.3]])), torch.tensor([[0.3]]))


@pytest.mark.parametrize("values", [(1.0,), (1.0, 0.0), (0.0, 0.0), (0.0, float("nan"))])
def test_bad_reward_values_are_refused(values):
    with pytest.raises(ValueError, match="reward_values"):
        tiny(reward_values=values)
