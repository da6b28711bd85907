"""Captions as conditioning: the tokenizer, the text encoder, the DiT reading captions (training and the KV cache
agree), caption dropout, checkpoints that carry a vocabulary, fine-tuning an unconditioned model into one that reads
captions, and first frames dreamt from captions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from worldsim.checkpoint import CheckpointError, load_world, save_checkpoint, load_checkpoint, save_world
from worldsim.models.autoencoder import Autoencoder, AutoencoderConfig
from worldsim.models.diffusion import DiffusionConfig, training_loss
from worldsim.models.dit import DiT, DiTConfig
from worldsim.models.text import TextEncoder, tokenize, vocabulary, words
from worldsim.simulator import WorldSimulator

VOCAB = ("biome", "day", "desert", "left", "night", "of", "pig", "player", "snow")


def tiny(vocab=VOCAB, **kw) -> DiT:
    torch.manual_seed(0)
    dit = DiT(DiTConfig(latent_channels=4, width=24, depth=2, heads=2, n_actions=3, context=4, vocab=vocab, **kw))
    for p in dit.parameters():  # adaLN-Zero and the text projection start at zero: perturb so captions matter
        p.data.add_(torch.randn_like(p) * 0.05)
    return dit.eval()


def test_words_vocabulary_and_tokens():
    assert words("Night, SNOW biome; pig left-of player") == ["night", "snow", "biome", "pig", "left", "of", "player"]
    assert vocabulary(["day, desert biome", "night, desert biome"]) == ("biome", "day", "desert", "night")
    ids = tokenize(["night, snow biome", "", "a cave at night", "pig " * 9], VOCAB, max_words=4)
    assert ids.tolist() == [[5, 9, 1, 0], [0, 0, 0, 0], [5, 0, 0, 0], [7, 7, 7, 7]]  # unknown words dropped, cut at 4
    with pytest.raises(TypeError, match="caption 3"):
        words(3)


def test_the_encoder_gives_zero_for_no_caption_and_the_same_vector_whatever_the_batch():
    torch.manual_seed(0)
    enc = TextEncoder(len(VOCAB), 24, 2, 2, 8)
    torch.nn.init.normal_(enc.proj.weight)
    ids = tokenize(["night, snow biome", "", "pig left of player", "night, snow biome"], VOCAB, 8)
    out = enc(ids)
    assert out.shape == (4, 24) and torch.isfinite(out).all()
    assert out[1].abs().max() == 0  # the unconditioned model
    assert torch.equal(out[0], out[3]) and not torch.allclose(out[0], out[2])
    assert torch.allclose(enc(ids[2:3])[0], out[2], atol=1e-6)  # a caption's vector does not depend on its batch
    swapped = tokenize(["player of left pig"], VOCAB, 8)
    assert not torch.allclose(enc(swapped)[0], out[2])  # word order counts: positions


def test_captions_condition_the_dit_and_the_cache_agrees_with_training():
    dit = tiny()
    b, t = 2, 6
    x, sigma = torch.randn(b, t, 4, 4, 4), torch.zeros(b, t)
    actions = torch.randint(0, 3, (b, t))
    text = dit.tokenize([["night, snow biome"] * t, ["day, desert biome, pig left of player"] * 3 + [""] * 3])
    out = dit(x, sigma, actions, text=text)
    plain = dit(x, sigma, actions)
    assert torch.equal(dit(x, sigma, actions, text=torch.zeros_like(text)).out, plain.out)  # no caption: as before
    assert not torch.allclose(out.out, plain.out)
    cache = dit.new_cache(b)
    for i in range(t):  # play time: one chunk at a time against the cache, captions passed per step
        step = dit.forward_chunk(x[:, i:i + 1], 0.0, actions[:, i], i, cache, write=True, text=text[:, i])
        assert torch.allclose(step.out, out.out[:, i:i + 1], atol=1e-5)
        assert torch.allclose(step.reward, out.reward[:, i:i + 1], atol=1e-5)


def test_caption_dropout_one_is_the_unconditioned_loss_and_zero_is_not():
    dit = tiny()
    x0 = torch.randn(2, 4, 4, 4, 4)
    actions, rewards, terminated = torch.randint(0, 3, (2, 4)), torch.zeros(2, 4), torch.zeros(2, 4)
    text = dit.tokenize([["night, snow biome"] * 4] * 2)

    def loss(dropout, with_text=True):
        cfg = DiffusionConfig(caption_dropout=dropout)
        gen = torch.Generator().manual_seed(0)
        return training_loss(dit, x0, actions, rewards, terminated, cfg, gen, text=text if with_text else None)[0]

    assert torch.equal(loss(1.0), loss(0.0, with_text=False))  # the dropout draw comes after the noise draws
    assert not torch.equal(loss(0.0), loss(0.0, with_text=False))
    with pytest.raises(ValueError, match="caption_dropout"):
        DiffusionConfig(caption_dropout=1.5)


def test_a_model_without_captions_refuses_them_and_bad_vocabularies_are_named():
    dit = tiny(vocab=())
    assert dit.text is None
    with pytest.raises(ValueError, match="without a text encoder"):
        dit(torch.randn(1, 2, 4, 4, 4), torch.zeros(1, 2), torch.zeros(1, 2, dtype=torch.long),
            text=torch.zeros(1, 2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="vocab"):
        DiTConfig(vocab=("night", "day"))  # not sorted
    with pytest.raises(ValueError, match="vocab"):
        DiTConfig(vocab=("Day",))


def _world(path, vocab=VOCAB):
    torch.manual_seed(0)
    ae = Autoencoder(AutoencoderConfig(width=8, latent_channels=4, head_width=16))
    return save_world(path, ae, tiny(vocab), DiffusionConfig(denoise_steps=2), config={"tiny": True},
                      action_meanings=["a", "b", "c"], frame_shape=[32, 32, 3], env=None, step=0)


def test_checkpoints_carry_the_vocabulary_and_refuse_a_damaged_one(tmp_path):
    path = _world(tmp_path / "w.safetensors")
    world = load_world(path)
    assert world.dit.config.vocab == VOCAB and world.dit.text is not None
    tensors, meta = load_checkpoint(path)
    dit_config = json.loads(json.dumps(meta["dit_config"]))
    dit_config["vocab"] = ["night", 3]
    bad = save_checkpoint(tmp_path / "bad.safetensors", tensors, **{**meta, "dit_config": dit_config})
    with pytest.raises(CheckpointError, match="dit_config.vocab"):
        load_world(bad)


def test_imagine_dreams_first_frames_from_captions(tmp_path):
    sim = WorldSimulator.from_checkpoint(_world(tmp_path / "w.safetensors"), device="cpu", seed=0)
    frames = sim.imagine(["night, snow biome", "day, desert biome", ""], steps=3, guidance=3.0, seed=7)
    assert frames.shape == (3, 32, 32, 3) and frames.dtype == np.uint8
    again = sim.imagine(["day, desert biome"], steps=3, guidance=3.0, seed=8)  # frame i draws from seed + i
    assert np.array_equal(again[0], frames[1])
    assert not np.array_equal(sim.imagine(["day, desert biome"], steps=3, guidance=1.0, seed=8)[0], frames[1])
    sim.reset(frames[:1, None])  # a dreamt frame starts a world like any other
    assert sim.step([1]).frames.shape == (1, 32, 32, 3)
    with pytest.raises(ValueError, match="guidance"):
        sim.imagine(["night"], guidance=float("nan"))
    plain = WorldSimulator.from_checkpoint(_world(tmp_path / "p.safetensors", vocab=()), device="cpu")
    with pytest.raises(ValueError, match="without captions"):
        plain.imagine(["night"])
