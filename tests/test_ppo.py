"""PPO (worldsim.agents.ppo) and `worldsim agent train|eval`: the NEXT_STEP autoreset masks on a fake vector env whose
episodes end at known steps, GAE's bootstrap, a smoke run on Craft2D-v0 through the CLI, determinism, and bad input."""

from __future__ import annotations

import json
import shutil

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from gymnasium.wrappers.vector import RecordEpisodeStatistics

from worldsim.agents.evaluate import EvalConfig, evaluate, info_of
from worldsim.agents.policy import Policy
from worldsim.agents.ppo import Args, Rollout, collect, flatten, gae, train
from worldsim.agents.ppo_state import load_policy, read_policy_meta
from worldsim.checkpoint import load_checkpoint
from worldsim.cli import main
from worldsim.config import parse_overrides

FAKE = "worldsim_test/Fake-v0"
SIDE = 36  # the smallest frame the Nature CNN takes


class FakeVectorEnv(gym.vector.VectorEnv):
    """Sub-env i's episodes last lengths[i] steps and then end as ends[i] ("terminated" or "truncated"). Frames are
    filled with the step in the episode (0 at reset), reward 1 a step, NEXT_STEP autoreset. `log` keeps, per step,
    (action given, whether the env ignored it) for each sub-env; `partial` allows reset(options={"reset_mask": m})."""

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 2, lengths=(3, 5), ends=("terminated", "truncated"), n_actions: int = 3,
                 partial: bool = False):
        self.num_envs, self.lengths, self.ends, self.partial = num_envs, list(lengths), list(ends), partial
        self.single_observation_space = spaces.Box(0, 255, (SIDE, SIDE, 3), np.uint8)
        self.single_action_space = spaces.Discrete(n_actions)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self.t = np.zeros(num_envs, np.int64)
        self.episode = np.zeros(num_envs, np.int64)
        self.autoreset = np.zeros(num_envs, bool)
        self.log: list[list[tuple[int, bool]]] = []

    def _obs(self) -> np.ndarray:
        return np.broadcast_to(self.t[:, None, None, None], (self.num_envs, SIDE, SIDE, 3)).astype(np.uint8)

    def _info(self) -> dict:
        return {"t": self.t.copy(), "_t": np.ones(self.num_envs, bool)}

    def reset(self, *, seed=None, options=None):
        mask = (options or {}).get("reset_mask")
        if mask is not None and not self.partial:
            raise ValueError("reset options ['reset_mask']: this fake env has no partial reset")
        mask = np.ones(self.num_envs, bool) if mask is None else mask
        self.t[mask] = 0
        self.autoreset[mask] = False
        return self._obs(), self._info()

    def step(self, actions):
        actions = np.asarray(actions)
        ignored = self.autoreset.copy()
        self.log.append([(int(a), bool(g)) for a, g in zip(actions, ignored)])
        self.t = np.where(ignored, 0, self.t + 1)
        self.episode += ignored
        ends = np.array([self.t[i] >= self.lengths[i] and not ignored[i] for i in range(self.num_envs)])
        terminated = ends & np.array([e == "terminated" for e in self.ends])
        truncated = ends & ~terminated
        self.autoreset = ends
        rewards = np.where(ignored, 0.0, 1.0)
        return self._obs(), rewards, terminated, truncated, self._info()


if FAKE not in gym.registry:
    gym.register(FAKE, vector_entry_point=FakeVectorEnv)


# ---- the NEXT_STEP masks -----------------------------------------------------------------------------------------
def test_the_action_after_a_done_is_never_trained_on_and_episodes_are_counted_right():
    torch.manual_seed(0)
    env = FakeVectorEnv()
    envs = RecordEpisodeStatistics(env)
    policy = Policy((SIDE, SIDE, 3), 3, channels_last=True)
    buf = Rollout.empty(12, 2, (SIDE, SIDE, 3), torch.device("cpu"))
    episodes = []
    obs, _ = envs.reset(seed=0)
    next_obs, next_done = collect(envs, policy, buf, torch.as_tensor(obs), np.zeros(2, bool),
                                  lambda step, i, r, n: episodes.append((step, i, r, n)))
    ignored = np.array([[g for _, g in row] for row in env.log])  # (12, 2)
    # sub-env 0: 3 steps then its autoreset step (period 4); sub-env 1: 5 steps then the autoreset (period 6)
    assert ignored[:, 0].tolist() == [False, False, False, True] * 3
    assert ignored[:, 1].tolist() == [False] * 5 + [True] + [False] * 5 + [True]
    assert np.array_equal(buf.valid.numpy(), ~ignored)
    assert np.array_equal(buf.terminated.numpy()[:, 0].nonzero()[0], [2, 6, 10])  # sub-env 0 terminates
    assert buf.terminated.numpy()[:, 1].sum() == 0 and np.array_equal(buf.dones.numpy()[:, 1].nonzero()[0], [4, 10])
    # the batch holds exactly the actions the env acted on, in (step, env) order
    advantages, returns = gae(buf, torch.zeros(2), 0.99, 0.95)
    _, actions, *_ = flatten(buf, advantages, returns)
    acted = [a for row in env.log for a, g in row if not g]
    assert actions.tolist() == acted and len(acted) == 24 - 3 - 2
    # returns and lengths count the episode's steps, never the autoreset step
    assert sorted((i, r, n) for _, i, r, n in episodes) == [(0, 3.0, 3)] * 3 + [(1, 5.0, 5)] * 2
    assert [s for s, i, *_ in episodes if i == 0] == [2, 6, 10]
    # the done step returned the episode's final frame: the next step's obs is it (filled with the episode's length)
    assert int(buf.obs[3, 0, 0, 0, 0]) == 3 and int(buf.obs[5, 1, 0, 0, 0]) == 5 and int(buf.obs[4, 0, 0, 0, 0]) == 0


def test_gae_bootstraps_a_truncation_from_the_final_frame_and_a_termination_from_nothing():
    def one_env(terminated: bool) -> Rollout:
        buf = Rollout.empty(4, 1, (1, 1, 1), torch.device("cpu"))
        buf.rewards[:, 0] = torch.tensor([1.0, 1.0, 0.0, 1.0])
        buf.values[:, 0] = torch.tensor([0.5, 0.25, 8.0, 0.125])  # values[2]: V(the final frame)
        buf.dones[1, 0] = 1.0
        buf.terminated[1, 0] = float(terminated)
        buf.valid[:, 0] = torch.tensor([True, True, False, True])
        return buf

    gamma, lam, next_value = 0.5, 1.0, torch.tensor([2.0])
    for terminated in (False, True):
        adv, ret = gae(one_env(terminated), next_value, gamma, lam)
        a1 = 1.0 + (0.0 if terminated else gamma * 8.0) - 0.25
        a0 = 1.0 + gamma * 0.25 - 0.5 + gamma * lam * a1
        a3 = 1.0 + gamma * 2.0 - 0.125
        assert adv[:, 0].tolist() == pytest.approx([a0, a1, adv[2, 0].item(), a3])
        assert ret[0, 0].item() == pytest.approx(a0 + 0.5)


def test_info_of_unbatches_nested_infos_with_their_masks():
    infos = {"t": np.array([1, 2]), "_t": np.array([True, True]), "pos": np.array([(1, 2), None], dtype=object),
             "_pos": np.array([True, False]), "inv": {"dirt": np.array([0, 3]), "_dirt": np.array([False, True])},
             "_inv": np.array([True, True])}
    assert info_of(infos, 0) == {"t": 1, "pos": (1, 2), "inv": {}}
    assert info_of(infos, 1) == {"t": 2, "inv": {"dirt": 3}}


# ---- end to end --------------------------------------------------------------------------------------------------
TIMES = ("steps_per_s", "update_s")  # the log's clock readings: everything else is the same for the same seed
TINY = ["total_steps=128", "num_envs=2", "num_steps=32", "update_epochs=1", "num_minibatches=2", "save_every=1",
        "env_kwargs.max_episode_steps=20", "env_kwargs.world_width=64"]


def test_train_writes_a_policy_and_eval_loads_it(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["agent", "train", *TINY, f"out={out}", "eval_episodes=2"]) == 0
    path = out / "policy.safetensors"
    after = json.loads((out / "eval.json").read_text())  # the evaluation after training, in its training env
    assert after["episodes"] == 2 and after["lengths"] == [20, 20] and after["env"] == "worldsim/Craft2D-v0"
    policy, meta = load_policy(path)
    assert meta["obs_shape"] == [64, 64, 3] and meta["n_actions"] == 12 and meta["channels_last"]
    assert meta["action_meanings"][:3] == ["noop", "left", "right"] and meta["config"]["num_envs"] == 2
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["update"] for r in log if r["kind"] == "update"] == [1, 2]
    assert {r["length"] for r in log if r["kind"] == "episode"} == {20}  # the time limit, autoreset steps left out
    capsys.readouterr()
    assert main(["agent", "eval", str(path), "episodes=3", "num_envs=2", f"out={tmp_path / 'eval.json'}"]) == 0
    text = capsys.readouterr().out
    assert "return" in text and "over 3 episodes" in text and "mined" in text  # Craft2D's events, counted
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["episodes"] == 3 and result["lengths"] == [20, 20, 20]  # the policy's env_kwargs by default
    for agent in ("random", "explorer"):  # the scripted rows of the experiment's table, measured the same way
        r = evaluate(EvalConfig(agent=agent, episodes=2, num_envs=2, env_kwargs={"max_episode_steps": 30}), quiet=True)
        assert r["episodes"] == 2 and r["lengths"] == [30, 30] and r["agent"] == agent


def test_the_same_seed_trains_the_same_policy(tmp_path):
    def run(name: str, seed: int):
        args = parse_overrides(Args, [*TINY, f"seed={seed}", f"out={tmp_path / name}"], "agent")
        tensors, _ = load_checkpoint(train(args, quiet=True))
        log = [json.loads(line) for line in (tmp_path / name / "log.jsonl").read_text().splitlines()]
        return tensors, [{k: v for k, v in r.items() if k not in TIMES} for r in log]

    (a, log_a), (b, log_b), (c, _) = run("a", 1), run("b", 1), run("c", 2)
    assert all(torch.equal(a[k], b[k]) for k in a) and log_a == log_b
    assert not all(torch.equal(a[k], c[k]) for k in a)


def _log(run) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_a_stopped_run_continues_with_the_same_command(tmp_path, capsys):
    out = tmp_path / "run"
    three = [*TINY[1:], "total_steps=192", f"out={out}"]  # 3 updates of 64 steps
    assert main(["agent", "train", *three, "stop_after=1", "eval_episodes=1"]) == 0
    assert "stopped at update 1 of 3 (stop_after=1): the same command continues" in capsys.readouterr().out
    assert not (out / "eval.json").exists()  # the evaluation comes after the last update
    state = out / "last.state.safetensors"
    _, meta = load_checkpoint(state)
    assert (meta["update"], meta["step"]) == (1, 64) and read_policy_meta(out / "policy.safetensors")["steps"] == 64
    stopped = tmp_path / "copy"
    shutil.copytree(out, stopped)
    with open(out / "log.jsonl", "a") as f:  # a kill mid-rollout: lines past the save, the last one torn
        f.write(json.dumps({"kind": "episode", "step": 96, "env": 0, "return": 1.0, "length": 20}) + '\n{"kind": "ep')

    assert main(["agent", "train", *three, "stop_after=0", "eval_episodes=1"]) == 0  # settings that may change
    assert "resuming" in capsys.readouterr().out and (out / "eval.json").exists()
    log = _log(out)
    updates = [r for r in log if r["kind"] == "update"]
    assert [(r["update"], r["step"]) for r in updates] == [(1, 64), (2, 128), (3, 192)]
    assert [r["step"] for r in log] == sorted(r["step"] for r in log)
    assert updates[1]["lr"] == pytest.approx(2.5e-4 * (1 - 1 / 3))  # the schedule goes on from update 1
    policy, meta = load_policy(out / "policy.safetensors")
    assert meta["steps"] == 192 and load_checkpoint(state)[1]["update"] == 3

    # resumed from the same save, the run is the same: the envs start again from seeds of (seed, update)
    assert main(["agent", "train", *three, f"out={stopped}"]) == 0
    a, b = load_checkpoint(out / "policy.safetensors")[0], load_checkpoint(stopped / "policy.safetensors")[0]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [{k: v for k, v in r.items() if k not in TIMES} for r in _log(stopped)] == [
        {k: v for k, v in r.items() if k not in TIMES} for r in log]  # the lines past the save, torn one too, are gone
    capsys.readouterr()
    assert main(["agent", "train", *three]) == 0  # done: nothing to train
    assert "nothing to train (raise total_steps" in capsys.readouterr().out and len(_log(out)) == len(log)


def test_ctrl_c_between_two_updates_learning_saves_the_last_finished_update(tmp_path, monkeypatch):
    import worldsim.agents.ppo as ppo

    calls, collect_ = [], ppo.collect

    def interrupted(*a, **k):  # Ctrl-C in the second rollout: update 1 is finished but was not saved
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return collect_(*a, **k)

    out = tmp_path / "run"
    args = parse_overrides(Args, [*TINY, "save_every=10", "save_every_s=1e9", f"out={out}"], "agent")
    monkeypatch.setattr(ppo, "collect", interrupted)
    with pytest.raises(KeyboardInterrupt, match="update 1 \\(step 64\\) is saved"):
        train(args, quiet=True)
    monkeypatch.undo()
    assert load_checkpoint(out / "last.state.safetensors")[1]["update"] == 1
    train(args, quiet=True)
    assert [r["update"] for r in _log(out) if r["kind"] == "update"] == [1, 2]


def test_a_run_is_resumed_only_with_its_settings_and_by_one_process(tmp_path, capsys):
    from worldsim.train.state import lock_run

    out = tmp_path / "run"
    assert main(["agent", "train", *TINY, f"out={out}", "stop_after=1"]) == 0
    for change, named in (("learning_rate=0.001", "learning_rate=0.00025 (now 0.001)"),
                          ("env_kwargs.world_width=96", "env_kwargs.world_width=64 (now 96)"),
                          ("num_envs=4", "num_envs=2 (now 4)")):
        capsys.readouterr()
        assert main(["agent", "train", *TINY, f"out={out}", change]) == 2, change
        err = capsys.readouterr().err
        assert f"holds a run with other settings: {named}" in err and "choose another out=" in err, err
    with lock_run(out):
        assert main(["agent", "train", *TINY, f"out={out}"]) == 2
        assert "is being trained by another process" in capsys.readouterr().err
    old = tmp_path / "old"  # a policy without its state (a run of a worldsim before resuming) is never overwritten
    old.mkdir()
    shutil.copy(out / "policy.safetensors", old / "policy.safetensors")
    assert main(["agent", "train", *TINY, f"out={old}"]) == 2
    assert "holds policy.safetensors but no last.state.safetensors" in capsys.readouterr().err


def test_a_fake_env_trains_through_its_vector_entry_point(tmp_path):
    args = parse_overrides(Args, [f"env={FAKE}", "total_steps=48", "num_envs=2", "num_steps=12",
                                  f"out={tmp_path}"], "agent")
    meta = read_policy_meta(train(args, quiet=True))
    assert meta["obs_shape"] == [SIDE, SIDE, 3] and meta["n_actions"] == 3 and meta["env"] == FAKE


# ---- bad input, refused before any work --------------------------------------------------------------------------
def test_bad_input_is_refused_with_the_value_and_what_was_expected(tmp_path, capsys):
    args = parse_overrides(Args, [f"env={FAKE}", "total_steps=24", "num_envs=2", "num_steps=12",
                                  f"out={tmp_path / 'fake'}"], "agent")
    fake_policy = train(args, quiet=True)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(fake_policy.read_bytes()[:1000])
    cases = [
        (["agent", "eval", str(fake_policy), "env=worldsim/Craft2D-v0"],
         "observations (36, 36, 3) and 3 actions; env='worldsim/Craft2D-v0' has (64, 64, 3) and 12"),
        (["agent", "eval", str(corrupt)], "not a readable safetensors file"),
        (["agent", "eval", str(tmp_path / "missing.safetensors")], "no such file"),
        (["agent", "train", "env=worldsim/Nope-v0", f"out={tmp_path}"], "env='worldsim/Nope-v0'"),
        (["agent", "train", "env=CartPole-v1", f"out={tmp_path}"], "expected uint8 images"),
        (["agent", "train", "env_kwargs.colour=1", f"out={tmp_path}"], "env_kwargs {'colour': 1}: "),
        (["agent", "eval", "agent=human"], "agent='human': expected one of"),
        (["agent", "eval"], "one of them: a policy file"),
        (["agent", "train", "total_steps=10", f"out={tmp_path}"], "total_steps=10: expected at least one rollout"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    from test_dream import write_world

    world = write_world(tmp_path / "world.safetensors")
    assert main(["agent", "eval", str(world)]) == 2
    assert "not a policy" in capsys.readouterr().err


def test_help_lists_every_key_and_the_recipes(capsys):
    for action, cls in (("train", Args), ("eval", EvalConfig)):
        assert main(["agent", action, "--help"]) == 0
        text = capsys.readouterr().out
        for f in __import__("dataclasses").fields(cls):
            assert f"  {f.name}=" in text or f"  {f.name}.KEY=" in text, f.name
            assert f.metadata["help"].split()[0] in text  # its docstring, not a bare key
    main(["agent", "train", "--help"])
    assert "craft2d_dream, craft2d_real" in capsys.readouterr().out


def test_the_experiment_arms_differ_only_in_where_they_learn():
    real = parse_overrides(Args, ["experiment=craft2d_real"], "agent")
    dream = parse_overrides(Args, ["experiment=craft2d_dream"], "agent")
    assert real.env == "worldsim/Craft2D-v0" and dream.env == "worldsim/Dream-v0"
    assert real.eval_env == dream.eval_env == "worldsim/Craft2D-v0" and real.eval_episodes == dream.eval_episodes == 100
    same = {k: v for k, v in vars(real).items() if k not in ("env", "env_kwargs", "out")}
    assert same == {k: v for k, v in vars(dream).items() if k not in ("env", "env_kwargs", "out")}
