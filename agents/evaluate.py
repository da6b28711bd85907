"""`worldsim agent eval`: a trained policy, or a scripted agent, played for N episodes in a vector env; the mean and
spread of the return and, where the env reports them (Craft2D's info["events"]), how often each event happened.

    worldsim agent eval runs/ppo/policy.safetensors env=worldsim/Craft2D-v0 episodes=100
    worldsim agent eval agent=explorer episodes=100          # the scripted agents, measured the same way

Sub-env i of N plays episodes i, i + N, ... until the N of them have played `episodes` between them (each its share,
so short episodes are not favoured by stopping at the first ones to end); every sub-env is seeded (seed + i), so an
evaluation is reproducible. Autoreset is NEXT_STEP, as in training: the step after an episode's end is no move.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldsim.agents.policy import image_layout
from worldsim.agents.ppo import Args, documented, make_envs, train
from worldsim.agents.ppo_state import finished, load_policy, read_policy_meta
from worldsim.config import check, check_out

SCRIPTED = ("random", "explorer", "mixture")  # the registry's agents that need no person


@documented
@dataclass(frozen=True)
class EvalConfig:
    policy: str | None = None
    """a policy file of `worldsim agent train` (OUT/policy.safetensors); also the first plain argument"""
    agent: str | None = None
    """instead of a policy, a scripted agent: random | explorer (Craft2D) | mixture"""
    env: str | None = None
    """the env to play; null: the policy's training env, or worldsim/Craft2D-v0 for a scripted agent"""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """keyword arguments of gym.make_vec; with env=null, added to (or replacing) those the policy was trained with"""
    episodes: int = 100
    """episodes to play"""
    num_envs: int = 8
    """envs stepped together (at most episodes)"""
    seed: int = 1000
    """seeds the envs (sub-env i: seed + i), the policy's action sampling and the agents; not training's 0, so the
    policy meets worlds it was not trained in"""
    greedy: bool = False
    """the policy's most likely action instead of a sample"""
    device: str = "cpu"
    """where the policy runs: cpu | cuda | auto"""
    out: str | None = None
    """write the result to this .json file too"""

    def __post_init__(self):
        check((self.policy is None) != (self.agent is None), "policy, agent", (self.policy, self.agent),
              "one of them: a policy file (worldsim agent eval POLICY) or agent=random|explorer|mixture")
        check(self.agent is None or self.agent in SCRIPTED, "agent", self.agent, f"one of {list(SCRIPTED)}")
        check(self.episodes >= 1, "episodes", self.episodes, "an integer >= 1")
        check(self.num_envs >= 1, "num_envs", self.num_envs, "an integer >= 1")
        check(self.device in ("auto", "cpu", "cuda"), "device", self.device, "auto, cpu or cuda")
        if self.out is not None:
            check_out("out", self.out, (".json",))


def info_of(infos: dict[str, Any], i: int) -> dict[str, Any]:
    """Sub-env i's info from a vector env's batched one (Gymnasium's arrays with `_key` masks, dicts nested)."""
    out = {}
    for key, value in infos.items():
        mask = infos.get(f"_{key}")
        if key.startswith("_") or (mask is not None and not mask[i]):
            continue
        if isinstance(value, dict):
            out[key] = info_of(value, i)
        else:
            item = value[i]
            out[key] = item.item() if isinstance(item, np.generic) else item
    return out


def evaluate(cfg: EvalConfig, quiet: bool = False) -> dict[str, Any]:
    """Play `cfg.episodes` episodes; returns {"returns", "lengths", "return_mean", "return_std", "length_mean",
    "events": {event: {"per_episode", "share"}}, ...}. Everything is checked before the first step."""
    from worldsim.progress import Progress

    policy, meta = None, None
    if cfg.policy is not None:
        meta = read_policy_meta(cfg.policy)  # before any env is made: a bad file is refused at once
    env_id = cfg.env or (meta["env"] if meta else "worldsim/Craft2D-v0")
    kwargs = {**meta["env_kwargs"], **cfg.env_kwargs} if meta and cfg.env is None else dict(cfg.env_kwargs)
    n = min(cfg.num_envs, cfg.episodes)
    envs = make_envs(env_id, n, kwargs)
    try:
        if meta is not None:
            space, actions = envs.single_observation_space, int(envs.single_action_space.n)
            if tuple(space.shape) != tuple(meta["obs_shape"]) or actions != meta["n_actions"]:
                raise ValueError(f"policy={cfg.policy!r} was trained on {meta['env']!r}: observations "
                                 f"{tuple(meta['obs_shape'])} and {meta['n_actions']} actions; env={env_id!r} has "
                                 f"{tuple(space.shape)} and {actions}: evaluate it in an env of the same shapes")
            image_layout(space, f"env={env_id!r}")
            policy, _ = load_policy(cfg.policy, cfg.device)
            torch.manual_seed(cfg.seed)
            agents = []
        else:
            from worldsim.agents.base import make_agent

            agents = [make_agent(cfg.agent, envs.single_action_space, env_id) for _ in range(n)]
        result = _play(cfg, envs, policy, agents, None if quiet else Progress(cfg.episodes, "eval", "episodes"))
    finally:
        envs.close()
    result.update(env=env_id, env_kwargs=kwargs, policy=cfg.policy, agent=cfg.agent or "ppo", seed=cfg.seed,
                  greedy=cfg.greedy)
    if cfg.out is not None:
        from worldsim.io import atomic_write_json

        atomic_write_json(cfg.out, result)
    return result


def _play(cfg: EvalConfig, envs, policy, agents: list, progress) -> dict[str, Any]:
    n = envs.num_envs
    quota = [cfg.episodes // n + (i < cfg.episodes % n) for i in range(n)]
    returns: list[list[float]] = [[] for _ in range(n)]  # per sub-env, in order: the result does not depend on
    lengths: list[list[int]] = [[] for _ in range(n)]  # which sub-env happened to finish first
    events: list[list[Counter]] = [[] for _ in range(n)]
    ret, length, seen = np.zeros(n), np.zeros(n, np.int64), [Counter() for _ in range(n)]
    obs, infos = envs.reset(seed=cfg.seed)
    for i, agent in enumerate(agents):
        agent.reset(cfg.seed + i)
    done = np.zeros(n, bool)  # the last step ended sub-env i's episode: this step is its autoreset
    episode = np.zeros(n, np.int64)  # episodes each sub-env has begun
    device = next(policy.parameters()).device if policy is not None else None
    while any(len(r) < q for r, q in zip(returns, quota)):
        if policy is not None:
            with torch.no_grad():
                action = policy.get_action_and_value(torch.as_tensor(obs, device=device), greedy=cfg.greedy)[0]
            action = action.cpu().numpy()
        else:
            action = np.array([agent.act(obs[i], info_of(infos, i)) for i, agent in enumerate(agents)], np.int64)
        obs, reward, terminated, truncated, infos = envs.step(action)
        for i in range(n):
            if done[i]:  # the autoreset step: a new episode starts here, nothing happened in the old one
                episode[i] += 1
                if agents:
                    agents[i].reset(cfg.seed + i + n * int(episode[i]))
                continue
            ret[i] += reward[i]
            length[i] += 1
            if "events" in infos and infos.get("_events", np.ones(n, bool))[i]:
                seen[i].update(infos["events"][i])
        done = np.logical_or(terminated, truncated)
        for i in np.flatnonzero(done):
            if len(returns[i]) < quota[i]:
                returns[i].append(float(ret[i]))
                lengths[i].append(int(length[i]))
                events[i].append(seen[i])
            ret[i], length[i], seen[i] = 0.0, 0, Counter()
        if progress:
            progress.update(sum(len(r) for r in returns))
    if progress:
        progress.close(cfg.episodes)
    rs = [r for per_env in returns for r in per_env]
    ls = [n_ for per_env in lengths for n_ in per_env]
    counts = [c for per_env in events for c in per_env]
    names = sorted(set().union(*counts))
    return {"episodes": len(rs), "return_mean": float(np.mean(rs)), "return_std": float(np.std(rs)),
            "length_mean": float(np.mean(ls)), "returns": rs, "lengths": ls,
            "events": {e: {"per_episode": float(np.mean([c[e] for c in counts])),
                           "share": float(np.mean([c[e] > 0 for c in counts]))} for e in names}}


def report(result: dict[str, Any]) -> str:
    """A person's summary: the return, then each event's mean count and the share of episodes it happened in."""
    who = result["policy"] or f"agent={result['agent']}"
    lines = [f"{who} in {result['env']}: return {result['return_mean']:.2f} ± {result['return_std']:.2f} over "
             f"{result['episodes']} episodes (length {result['length_mean']:.0f})"]
    if result["events"]:
        lines.append(f"  {'event':<28} {'per episode':>11} {'episodes':>9}")
        for name, e in result["events"].items():
            lines.append(f"  {name.removeprefix('player '):<28} {e['per_episode']:>11.2f} {e['share']:>9.0%}")
    return "\n".join(lines)


def train_and_evaluate(args: Args, quiet: bool = False) -> Path:
    """`worldsim agent train`: train (or resume), then evaluate the policy over args.eval_episodes into OUT/eval.json,
    once the run has reached total_steps (not when stop_after stopped it part way)."""
    path = train(args, quiet)
    if args.eval_episodes > 0 and finished(args, path):
        result = evaluate(EvalConfig(policy=str(path), env=args.eval_env, env_kwargs=dict(args.eval_env_kwargs),
                                     episodes=args.eval_episodes, device=args.device,
                                     out=str(path.parent / "eval.json")), quiet=quiet)
        if not quiet:
            print(report(result))
    return path


def run(cfg: EvalConfig) -> dict[str, Any]:
    """The CLI's entry: evaluate and print the summary."""
    result = evaluate(cfg)
    print(report(result))
    if cfg.out is not None:
        print(f"wrote {cfg.out}")
    return result
