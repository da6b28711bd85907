"""The reward head as classes of the data's values: a step pays when the probability of a non-zero reward passes a
threshold chosen on held-out data for the best F1 of reward events (rare events never win an argmax)."""

from __future__ import annotations

import pytest
import torch

import worldsim.train.world as world
from worldsim.models.diffusion import DiffusionConfig, sample_sigma, training_loss
from worldsim.models.dit import DiT, DiTConfig
from worldsim.train.world import TrainWorldConfig, fit_reward_threshold, reward_agreement


def _model() -> DiT:
    torch.manual_seed(0)
    model = DiT(DiTConfig(latent_channels=4, width=32, depth=1, heads=2, n_actions=3, context=4,
                          reward_values=(0.0, 1.0))).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def _clips(n=6, t=5):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, t, 4, 4, 4, generator=g), torch.randint(0, 3, (n, t), generator=g)


def test_the_threshold_pays_exactly_on_the_events_when_the_scores_separate_them():
    model = _model()
    x, a = _clips()
    with torch.no_grad():
        scores = model.reward_scores(model(x, torch.zeros(a.shape), a).reward)  # (6, 5)
    events = scores >= scores.flatten().topk(4).values[-1]  # the 4 highest-scoring steps are the rewarded ones
    threshold = fit_reward_threshold(model, x, a, events.float(), batch_size=4)
    assert ((scores > threshold) == events).all()
    model.reward_threshold.fill_(threshold)
    with torch.no_grad():
        paid = model.reward_of(model(x, torch.zeros(a.shape), a).reward)
    assert torch.equal(paid, events.float())


def test_without_events_the_threshold_stays_at_one_half_and_the_module_keeps_its_mode():
    model = _model().train()
    x, a = _clips()
    assert fit_reward_threshold(model, x, a, torch.zeros(a.shape)) == 0.5
    assert model.training


def test_a_step_pays_its_most_likely_non_zero_value_only_past_the_threshold():
    model = DiT(DiTConfig(latent_channels=4, width=32, depth=1, heads=2, n_actions=3, reward_values=(-1.0, 0.0, 1.0)))
    logits = torch.log(torch.tensor([[[0.1, 0.7, 0.2], [0.05, 0.9, 0.05], [0.5, 0.2, 0.3]]]))  # P(non-zero) .3 .1 .8
    model.reward_threshold.fill_(0.25)
    assert model.reward_of(logits).tolist() == [[1.0, 0.0, -1.0]]
    model.reward_threshold.fill_(0.5)
    assert model.reward_of(logits).tolist() == [[0.0, 0.0, -1.0]]


def _head_says(monkeypatch, p_nonzero: torch.Tensor) -> None:
    """The model's reward logits over (0, 1) on any clips: P(reward 1) = p_nonzero (B, T)."""
    logits = torch.stack([(1 - p_nonzero).log(), p_nonzero.log()], -1)
    monkeypatch.setattr(world, "reward_logits", lambda dit, latents, actions: logits)


def test_reward_agreement_scores_each_half_with_the_threshold_chosen_on_the_other(monkeypatch):
    model = _model()
    x, a = _clips(n=4, t=5)
    rewards = torch.zeros(4, 5)
    rewards[:, 2] = 1.0  # one event per clip
    p = torch.full((4, 5), 0.1)
    p[:, 2] = 0.9
    _head_says(monkeypatch, p)  # the head separates the events: they pay, nothing else does
    logs = reward_agreement(model, x, a, rewards)
    assert logs == {"reward_events": 4.0, "reward_f1": 1.0, "reward_r": pytest.approx(1.0)}
    assert float(model.reward_threshold) == 0.5  # evaluation leaves the model's own threshold as it was

    p[1::2] = 0.65 + 0.3 * p[1::2]  # odd clips score higher (0.68 quiet, 0.92 paid): the even clips' threshold
    _head_says(monkeypatch, p)       # (0.5) pays every odd step; the odd clips' (0.8) only the even clips' events
    logs = reward_agreement(model, x, a, rewards)  # fit on the clips they score, both would be exact
    assert logs["reward_f1"] == pytest.approx(2 * 4 / (12 + 4)) and logs["reward_r"] < 1.0


def test_reward_agreement_of_a_head_that_never_pays_is_zero_and_without_rewards_empty(monkeypatch):
    model = _model()
    x, a = _clips(n=4, t=5)
    rewards = torch.zeros(4, 5)
    rewards[0, 1] = rewards[2, 4] = 1.0  # events in the even clips only: the odd ones' threshold stays at 0.5
    p = torch.full((4, 5), 0.3)
    p[1::2] = 0.2  # below the even clips' threshold (0.3, the score of every even step)
    _head_says(monkeypatch, p)
    assert reward_agreement(model, x, a, rewards) == {"reward_events": 2.0, "reward_f1": 0.0, "reward_r": 0.0}
    assert reward_agreement(model, x, a, torch.zeros(4, 5)) == {}  # held-out clips without a reward: nothing to say


def _heads_model(heads_read: str) -> DiT:
    torch.manual_seed(0)
    model = DiT(DiTConfig(latent_channels=4, width=32, depth=2, heads=2, n_actions=3, context=4, prev_frame=True,
                          heads_read=heads_read)).eval()
    with torch.no_grad():
        for p in model.parameters():  # adaLN-Zero starts as the identity: perturb so the streams differ
            p.add_(0.1 * torch.randn_like(p))
    return model


def test_heads_read_action_read_the_pass_from_pure_noise_against_the_clean_history():
    """In training's two streams, a heads_read="action" model's reward for chunk i is what a solver pass from pure
    noise against the cached clean history gives at play time, and it does not see chunk i's own frame."""
    model = _heads_model("action")
    x, a = _clips(n=2, t=5)
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    ones, zeros = torch.ones(a.shape), torch.zeros(a.shape)
    with torch.no_grad():
        both = model(eps, ones, a, history=x, history_sigma=zeros)
        cache = model.new_cache(2)
        for i in range(5):
            step = model.forward_chunk(eps[:, i:i + 1], 1.0, a[:, i], i, cache)
            assert torch.allclose(step.reward[:, 0], both.reward[:, i], atol=1e-5)
            model.forward_chunk(x[:, i:i + 1], 0.0, a[:, i], i, cache, write=True)
        other = x.clone()
        other[:, 3] = torch.randn_like(other[:, 3])  # chunk 3's own frame changes: its reward does not
        moved = model(eps, ones, a, history=other, history_sigma=zeros).reward
        framed = _heads_model("frame")(eps, ones, a, history=other, history_sigma=zeros).reward
    assert torch.allclose(moved[:, :4], both.reward[:, :4], atol=1e-6) and not torch.allclose(moved[:, 4],
                                                                                                both.reward[:, 4])
    assert not torch.allclose(framed, both.reward)  # the same weights reading the history stream: another output


def test_heads_read_action_learn_on_the_chunks_given_pure_noise_alone():
    cfg = DiffusionConfig(history="clean", noise_prob=0.5)
    sigma = sample_sigma(cfg, (64, 8), torch.Generator().manual_seed(0))
    assert 0.4 < float((sigma == 1).float().mean()) < 0.6 and float((sigma == 0).float().mean()) > 0.05
    assert torch.equal(sample_sigma(DiffusionConfig(), (64, 8), torch.Generator().manual_seed(0)) == 0, sigma == 0)
    model = _heads_model("action").train()
    x, a = _clips(n=2, t=5)
    drawn = sample_sigma(cfg, (2, 5), torch.Generator().manual_seed(3))  # training_loss's first draw, same seed
    assert 0 < int((drawn == 1).sum()) < 10
    rewards = torch.zeros(2, 5)

    def reward_loss(rewards):
        return training_loss(model, x, a, rewards, torch.zeros(2, 5), cfg,
                             generator=torch.Generator().manual_seed(3))[1]["reward_loss"]

    base = reward_loss(rewards)
    assert reward_loss(torch.where(drawn < 1, 1.0, rewards)) == pytest.approx(base)  # rewards where it is not read
    assert reward_loss(torch.where(drawn == 1, 1.0, rewards)) != pytest.approx(base)


def test_a_heads_read_action_model_needs_chunks_of_pure_noise_in_training():
    with pytest.raises(ValueError, match="noise_prob"):
        TrainWorldConfig(data="d", ae="a", dit={"heads_read": "action"})
    with pytest.raises(ValueError, match="heads_read"):
        DiTConfig(heads_read="noise")
    with pytest.raises(ValueError, match="noise_prob"):  # with clean_prob 0.1, at most 0.9 of the chunks
        DiffusionConfig(noise_prob=0.95)
