"""WorldSimulator: cached stepping equals recomputing the window from scratch; seeded per world; bad input refused;
built from a checkpoint; a device this machine lacks refused."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from worldsim.models.autoencoder import Autoencoder, AutoencoderConfig
from worldsim.models.diffusion import DiffusionConfig, sample, to_velocity
from worldsim.models.dit import DiT, DiTConfig
from worldsim.device import resolve_device
from worldsim.simulator import WorldSimulator

CONTEXT = 4


def _models(memory: int = 0):
    torch.manual_seed(0)
    ae = Autoencoder(AutoencoderConfig(downsample=8, latent_channels=4, width=16))
    dit = DiT(DiTConfig(latent_channels=4, width=48, depth=2, heads=2, n_actions=12, context=CONTEXT, memory=memory,
                        memory_stride=2))
    for p in dit.parameters():  # adaLN-Zero starts as the identity: perturb so the test sees real attention
        p.data.add_(torch.randn_like(p) * 0.02)
    return ae.eval(), dit.eval()


def _clip(b=2, t=3, h=64, w=96):
    return np.random.default_rng(0).integers(0, 256, (b, t, h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("memory", [0, 2])
def test_cached_steps_equal_recomputing_the_whole_history(memory):
    """The cache is exact for sliding-window attention as the DiT defines it: at every layer a chunk attends to the
    `context` chunks ending at itself (and its strided memory beyond them), so deeper layers see further back (as in
    Mistral). Brute force: the whole history through dit.forward (whose mask has the same reach) at every solver
    pass."""
    ae, dit = _models(memory)
    diffusion = DiffusionConfig(denoise_steps=2)
    frames = _clip()
    actions = np.array([[-1, 3, 4], [-1, 1, 2]])
    sim = WorldSimulator(ae, dit, diffusion, seed=7)
    sim.reset(frames, actions)
    plan = np.random.default_rng(1).integers(0, 12, (12, 2))  # more steps than the context: the window slides
    cached = [sim.step(a).latents for a in plan]

    gens = [torch.Generator().manual_seed(7 + b) for b in range(2)]  # seed=7: world b draws from seed 7 + b
    with torch.no_grad():
        hist = list(ae.encode(torch.from_numpy(frames)).unbind(1))  # T0 x (B, C, h, w)
        acts = [torch.from_numpy(actions[:, i]) for i in range(actions.shape[1])]
        for step, a in enumerate(plan):
            a = torch.from_numpy(a)
            past, past_actions = torch.stack(hist, 1), torch.stack(acts + [a], 1)

            def velocity(x, s):
                xs = torch.cat([past, x], 1)
                sig = torch.cat([torch.zeros(x.shape[0], past.shape[1]), s[:, None]], 1)
                return to_velocity(dit(xs, sig, past_actions).out[:, -1:], x, s, diffusion.prediction)

            noise = torch.stack([torch.randn((1,) + hist[0].shape[1:], generator=g) for g in gens])  # (B, 1, C, h, w)
            z = sample(velocity, noise, diffusion.denoise_steps)
            assert np.allclose(cached[step], z[:, 0].numpy(), atol=1e-5), f"step {step} differs"
            hist.append(torch.from_numpy(cached[step]))  # the same history for both: float32 noise must not compound
            acts.append(a)
    assert len(hist) > CONTEXT + 2  # the window slid several times


def test_same_seed_same_frames_other_seed_other_frames():
    ae, dit = _models()
    runs = []
    for seed in (3, 3, 4):
        sim = WorldSimulator(ae, dit, DiffusionConfig(denoise_steps=1), seed=seed)
        sim.reset(_clip(b=1, t=2))
        runs.append(np.stack([sim.step([5]).frames for _ in range(3)]))
    assert np.array_equal(runs[0], runs[1]) and not np.array_equal(runs[0], runs[2])


def test_step_shapes_and_types():
    ae, dit = _models()
    sim = WorldSimulator(ae, dit, DiffusionConfig(denoise_steps=1), seed=0)
    sim.reset(_clip(b=3, t=1, h=96, w=64))
    out = sim.step(np.array([0, 1, 2]))
    assert out.frames.shape == (3, 96, 64, 3) and out.frames.dtype == np.uint8
    assert out.rewards.shape == (3,) and out.terminated.dtype == np.bool_
    assert sim.t == 2


def test_bad_input_is_refused():
    ae, dit = _models()
    sim = WorldSimulator(ae, dit, DiffusionConfig(denoise_steps=1))
    with pytest.raises(RuntimeError, match="before reset"):
        sim.step([0])
    with pytest.raises(ValueError, match=r"\(B, T, H, W, 3\) uint8"):
        sim.reset(np.zeros((1, 64, 64, 3), np.uint8))
    sim.reset(_clip(b=2, t=1))
    with pytest.raises(ValueError, match="3 actions for 2 worlds"):
        sim.step([0, 1, 2])
    with pytest.raises(ValueError, match="steps=0"):
        WorldSimulator(ae, dit, DiffusionConfig(denoise_steps=0))


def test_a_world_dreams_the_same_in_any_batch():
    """World b of a batch seeded with seeds[b] dreams what a batch of one seeded with seeds[b] dreams: the noise is
    drawn per world, so a vector env's sub-env i equals a single env seeded as it is (floats round differently in a
    batched matmul: ~1e-6, far below a uint8 level)."""
    ae, dit = _models()
    clip, plan = _clip(b=3, t=2), np.random.default_rng(2).integers(0, 12, (6, 3))
    batch = WorldSimulator(ae, dit, DiffusionConfig(denoise_steps=2), seed=[11, 12, 13])
    batch.reset(clip)
    together = [batch.step(a) for a in plan]
    for b, seed in enumerate([11, 12, 13]):
        alone = WorldSimulator(ae, dit, DiffusionConfig(denoise_steps=2), seed=seed)
        alone.reset(clip[b:b + 1])
        for t, a in enumerate(plan[:, b]):
            out = alone.step([a])
            assert np.allclose(out.latents[0], together[t].latents[b], atol=1e-4), f"world {b}, step {t}"
            assert np.abs(out.frames[0].astype(int) - together[t].frames[b]).max() <= 1
    assert not np.allclose(together[0].latents[0], together[0].latents[1])  # and the worlds' noise differs


@pytest.mark.parametrize("reencode", [False, True])
def test_an_int_seed_seeds_world_b_with_seed_plus_b_and_restart_reseeds(reencode):
    """With diffusion.reencode too: a restarted world starts from its frame as reset() takes it (round-tripped)."""
    ae, dit = _models()
    diffusion = DiffusionConfig(denoise_steps=1, reencode=reencode)
    clip = _clip(b=2, t=1)
    pair = WorldSimulator(ae, dit, diffusion, seed=5)
    pair.reset(clip)
    explicit = WorldSimulator(ae, dit, diffusion, seed=[5, 6])
    explicit.reset(clip)
    assert np.array_equal(pair.step([1, 2]).latents, explicit.step([1, 2]).latents)
    # a restarted world draws from its new seed, as a fresh reset seeded with it would
    restart, starts = np.array([False, True]), clip[:, 0]
    pair.step([3, 3], restart=restart, start_frames=starts, restart_seeds=[0, 99])
    fresh = WorldSimulator(ae, dit, diffusion, seed=99)
    fresh.reset(clip[1:, :1])
    assert np.allclose(pair.step([4, 4]).latents[1], fresh.step([4]).latents[0], atol=1e-4)
    with pytest.raises(ValueError, match="3 seeds for 2 worlds"):
        WorldSimulator(ae, dit, diffusion, seed=[1, 2, 3]).reset(clip)


@pytest.mark.parametrize("reencode", [True, False])
def test_reencode_caches_every_frame_as_its_picture_encodes(reencode):
    """With diffusion.reencode every frame enters the history as the encoding of a picture: a dreamt one as the step
    shows it, a given one after a round trip through the autoencoder. So the world goes on exactly as a plain world
    reset on those pictures (the given frames' round trips, then the frames it showed). Without, the solver's own
    latents stay in the cache, which no picture's encoding is (a test that could not fail would pass both ways)."""
    ae, dit = _models()
    clip = _clip(b=2, t=2)
    dreamt = WorldSimulator(ae, dit, DiffusionConfig(denoise_steps=1, reencode=reencode), seed=3)
    dreamt.reset(clip, np.array([[-1, 2], [-1, 5]]))
    shown = np.stack([dreamt.step([4, 1]).frames for _ in range(2)], 1)  # (B, 2, H, W, 3)
    with torch.no_grad():
        round_trip = ae.decode_uint8(ae.encode(torch.from_numpy(clip))).numpy()  # (B, 2, H, W, 3)
    pictures = WorldSimulator(ae, dit, DiffusionConfig(denoise_steps=1), seed=3)
    pictures.reset(np.concatenate([round_trip, shown], 1), np.array([[-1, 2, 4, 4], [-1, 5, 1, 1]]))
    for sim in (dreamt, pictures):
        sim.seed(11)  # the same noise for the next step of both
    same = np.allclose(dreamt.step([7, 0]).latents, pictures.step([7, 0]).latents, atol=1e-5)
    assert same == reencode


def test_a_device_this_machine_lacks_is_refused_with_a_message():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"device='gpu': not a device name.*auto, cpu, cuda"):
        resolve_device("gpu")
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"device='cuda:99': this machine has \d+ CUDA device"):
            resolve_device("cuda:99")
    else:  # loop.device=cuda on a CPU machine: a message, not a traceback from inside torch
        with pytest.raises(ValueError, match=r"device='cuda': CUDA is not available here.*use device=cpu"):
            resolve_device("cuda")
        with pytest.raises(ValueError, match="CUDA is not available"):
            WorldSimulator(*_models(), DiffusionConfig(), device="cuda")


def test_action_guidance_contrasts_the_action_with_none():
    """out = none + g (action - none) on the network's prediction: g = 0 is the step under no action, g = 1 the plain
    step, and a larger g moves the frame further along the action's own effect. A first frame (no action) is left
    alone, with no extra pass."""
    ae, dit = _models()
    frames, history = _clip(), np.array([[-1, 3, 4], [-1, 1, 2]])

    def step(guidance, actions):
        sim = WorldSimulator(ae, dit, DiffusionConfig(denoise_steps=2, action_guidance=guidance), seed=3)
        sim.reset(frames, history)
        return sim.step(np.array(actions)).latents

    plain, none = step(1.0, [5, 7]), step(1.0, [-1, -1])
    assert np.allclose(step(0.0, [5, 7]), none, atol=1e-5)
    assert not np.allclose(plain, none, atol=1e-3)
    # 2 solver steps of a linear-in-guidance prediction: further from `none` than the plain step
    assert np.abs(step(3.0, [5, 7]) - none).mean() > 1.5 * np.abs(plain - none).mean()

    calls = []
    sim = WorldSimulator(ae, dit, DiffusionConfig(denoise_steps=2, action_guidance=3.0), seed=3)
    sim.reset(frames, history)
    passes = sim.dit.forward_conditions  # every pass goes through it, the cache write's too: (conditions) a call
    sim.dit.forward_conditions = lambda x, s, conds, *a: calls.append(len(conds)) or passes(x, s, conds, *a)
    sim.step(np.array([-1, -1]))
    assert calls == [1, 1, 1]  # two solver passes and the cache write: none to contrast with
    sim.step(np.array([5, -1]))
    assert calls[3:] == [2, 2, 1]  # each solver pass runs its contrast in the same call

    sim = WorldSimulator(ae, dit, DiffusionConfig(denoise_steps=2, history_guidance=3.0, history_window=2), seed=3)
    sim.reset(frames[:, :1], history[:, :1])
    calls.clear()
    sim.step(np.array([-1, -1]))
    sim.step(np.array([-1, -1]))
    sim.step(np.array([-1, -1]))
    assert calls == [1, 1, 1] * 2 + [2, 2, 1]  # 1, then 2 frames held: nothing older than the window to contrast


def test_history_guidance_contrasts_the_whole_history_with_the_latest_frames():
    """out = short + g (full - short), short the pass that sees the latest history_window cached frames: the same as
    the plain step while the history holds no more than that (the first step here: 2 frames), different once it holds
    more (3, the most a window of 4 holds); g = 0 is the short pass alone, the same step as a world whose cache holds
    those frames only."""
    ae, dit = _models()
    frames, history = _clip(t=2), np.array([[-1, 3], [-1, 1]])
    plan = [[5, 7], [2, 2], [4, 0], [1, 3]]

    def rollout(guidance):
        sim = WorldSimulator(ae, dit, DiffusionConfig(denoise_steps=2, history_guidance=guidance, history_window=2),
                             seed=3)
        sim.reset(frames, history)
        return [sim.step(np.array(a)).latents for a in plan], sim

    plain, guided = rollout(1.0)[0], rollout(2.0)[0]
    np.testing.assert_allclose(guided[0], plain[0], atol=1e-5)
    assert np.abs(guided[1] - plain[1]).max() > 1e-3  # 3 frames held: the oldest now counts for more

    short = rollout(0.0)[0]
    np.testing.assert_allclose(short[0], plain[0], atol=1e-5)
    _, sim = rollout(1.0)  # as `plain` after its 4 steps, then one more step against the latest 2 frames only
    sim.cache.lengths.clamp_(max=2)
    sim.seed(11)
    last = sim.step(np.array([6, 6])).latents
    _, sim = rollout(1.0)  # the same history, then the short pass alone
    sim.diffusion = replace(sim.diffusion, history_guidance=0.0)
    sim.seed(11)
    np.testing.assert_allclose(sim.step(np.array([6, 6])).latents, last, atol=1e-5)


@pytest.mark.parametrize("heads_read", ["frame", "action"])
def test_heads_read_action_pay_from_the_first_solver_pass_whatever_the_frame_drawn(heads_read):
    """A heads_read="action" model's reward and termination come from the first solver pass (pure noise, the same
    draw): from the same history, the same for 1 or 3 solver steps, though the frames differ; a "frame" model's
    follow the frame drawn."""
    torch.manual_seed(0)
    ae = Autoencoder(AutoencoderConfig(downsample=8, latent_channels=4, width=16)).eval()
    dit = DiT(DiTConfig(latent_channels=4, width=48, depth=2, heads=2, n_actions=12, context=CONTEXT,
                        heads_read=heads_read)).eval()
    for p in dit.parameters():
        p.data.add_(torch.randn_like(p) * 0.05)
    out = {}
    for steps in (1, 3):
        sim = WorldSimulator(ae, dit, DiffusionConfig(denoise_steps=steps), seed=0)
        sim.reset(_clip(b=2, t=2))
        out[steps] = sim.step(np.array([3, 7]))  # from the same real clip
    assert not np.array_equal(out[1].frames, out[3].frames)
    assert np.array_equal(out[1].rewards, out[3].rewards) == (heads_read == "action")
    sim = WorldSimulator(ae, dit, DiffusionConfig(denoise_steps=2), seed=0)
    sim.reset(_clip(b=2, t=2))
    target = sim.step(np.array([3, 7])).frames
    kept = sim.guided_step(np.array([3, 7]), target=target, strength=0.0)  # no solver pass: the heads still read
    assert kept.rewards.shape == (2,) and np.isfinite(kept.rewards).all()


@pytest.mark.parametrize("reencode", [False, True])
def test_a_reward_model_reads_the_frame_made_as_the_history_will_hold_it(reencode):
    """A reward model that reads the frame a step made (`after`) gets it as the cache and the next step's `recent`
    get it: under reencode the picture's latents, not the solver's."""
    from worldsim.models.reward import RewardModel, RewardModelConfig

    ae, dit = _models()
    reward = RewardModel(RewardModelConfig(latent_channels=4, n_actions=12, history=2, width=8, depth=1, after=True))
    sim = WorldSimulator(ae, dit, DiffusionConfig(denoise_steps=2, reencode=reencode), seed=3, reward=reward)
    read = []
    forward = sim.reward.forward
    sim.reward.forward = lambda frames, actions: read.append(frames) or forward(frames, actions)
    sim.reset(_clip(t=2), np.array([[-1, 3], [-1, 1]]))
    out = sim.step(np.array([5, 7]))
    torch.testing.assert_close(read[-1][:, -1], sim.recent[:, -1])  # the frame made, as the history now holds it
    z = torch.from_numpy(out.latents)
    assert reencode == (not torch.allclose(sim.recent[:, -1], z))  # the round trip moves the solver's latents
