"""PPO on Gymnasium 1.x vector envs with image observations and discrete actions, in CleanRL's spirit: one file, read
top to bottom. It trains in the real Craft2D, in Dream-v0 (a world model, stepped natively batched), or in any
Atari-like env.

    worldsim agent train env=worldsim/Craft2D-v0 num_envs=8 total_steps=200000 out=runs/ppo
    worldsim agent train env=worldsim/Dream-v0 num_envs=16 env_kwargs.denoise_steps=2
    worldsim agent train experiment=craft2d_dream          # configs/agent/experiment/craft2d_dream.yaml

Autoreset is Gymnasium 1.x's NEXT_STEP: the step after a sub-env ends returns its new first observation and ignores
the action taken. That step is no transition, so it is masked out of training (`valid`), and because the env only
resets on it, the observation a done step returns is the episode's final one: a truncated episode bootstraps from it.
Writes `out/policy.safetensors` (weights; the config, spaces and action meanings as JSON metadata, no pickles) and
`out/log.jsonl` (one line per finished episode and per update).

A killed run continues: the same command resumes it from its last save, as `worldsim train` does. Every `save_every`
updates or `save_every_s` seconds (and at the end, and on Ctrl-C between two updates' learning), the policy file and
then `out/last.state.safetensors` are written, each atomically: the state holds the policy, Adam's moments, the update
and env step, and every RNG (torch's, the minibatch order's numpy generator, python's). The learning rate is a closed
form of the update, so the update is the schedule's position (raising total_steps stretches it). The envs cannot be
saved: a resumed run resets them with seeds derived from the run's seed and the update it resumes at, drops the episodes
that were under way, and drops the log lines past its save. So a resumed run is not the run that was never stopped, but
it is deterministic given where it stopped. One process trains a run directory at a time (out/train.lock), and a resumed
run keeps its settings: a change is refused by name, except those in ppo_state.RESUMABLE. The network is in
worldsim.agents.policy, the files a run writes in worldsim.agents.ppo_state.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import random
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from worldsim.agents.policy import Policy, image_layout, pick_device
from worldsim.agents.ppo_state import load_state, restore_state, resume_seed, rng_states, save_policy, save_state
from worldsim.config import check, check_out, show


def documented(cls: type) -> type:
    """Copy the docstring under each dataclass field into its `help` metadata: `--help` prints it, and the docstring
    (CleanRL's style) stays the one place the meaning is written."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = next(n for n in tree.body if isinstance(n, ast.ClassDef)).body
    docs = {a.target.id: b.value.value for a, b in zip(body, body[1:]) if isinstance(a, ast.AnnAssign)
            and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant) and isinstance(b.value.value, str)}
    for f in dataclasses.fields(cls):
        if f.name in docs:
            f.metadata = MappingProxyType({**f.metadata, "help": " ".join(docs[f.name].split())})
    return cls


@documented
@dataclass(frozen=True)
class Args:
    env: str = "worldsim/Craft2D-v0"
    """Gymnasium env id with image observations and Discrete actions; 'module:id' imports module first
    (ale_py:ALE/Breakout-v5)"""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """keyword arguments of gym.make_vec (Dream-v0: checkpoint, denoise_steps, device, ...)"""
    num_envs: int = 8
    """envs stepped together; the policy acts on all of them in one batched forward pass"""
    vectorization_mode: str | None = None
    """sync | async | vector_entry_point; null: the env's native vector env where it has one (Dream-v0's, one
    batched world-model step), else sync"""
    total_steps: int = 200_000
    """env steps to train for, summed over the envs (the autoreset steps included)"""
    num_steps: int = 128
    """steps per env in a rollout: each update learns from num_steps x num_envs of them"""
    learning_rate: float = 2.5e-4
    """Adam's learning rate"""
    anneal_lr: bool = True
    """decay the learning rate linearly to 0 over the run"""
    gamma: float = 0.99
    """discount factor"""
    gae_lambda: float = 0.95
    """lambda of generalized advantage estimation"""
    num_minibatches: int = 4
    """minibatches a rollout is split into"""
    update_epochs: int = 4
    """passes over each rollout"""
    norm_adv: bool = True
    """normalise advantages per minibatch"""
    clip_coef: float = 0.1
    """the surrogate clipping coefficient"""
    clip_vloss: bool = True
    """clip the value loss as the policy loss is clipped"""
    ent_coef: float = 0.01
    """entropy bonus coefficient"""
    vf_coef: float = 0.5
    """value loss coefficient"""
    max_grad_norm: float = 0.5
    """gradient clipping norm"""
    target_kl: float | None = None
    """stop a rollout's epochs early once the approximate KL passes this (null: never)"""
    seed: int = 0
    """seeds torch, the minibatch order and the envs (sub-env i: seed + i): the same seed gives the same run on the
    CPU"""
    device: str = "cpu"
    """where the policy runs: cpu | cuda | auto (the env's own device is an env_kwargs key of Dream-v0)"""
    out: str = "runs/agent"
    """run directory: policy.safetensors, log.jsonl, eval.json and the state a killed run resumes from (the same
    command continues the run in it)"""
    save_every: int = 10
    """updates between saves of the policy and the training state (and at the end)"""
    save_every_s: float = 300.0
    """save after an update too once this many seconds passed since the last save (0: every update)"""
    stop_after: int = 0
    """save and stop after this many updates in this invocation (0: run to total_steps); the same command
    continues"""
    eval_env: str | None = None
    """after training, evaluate the policy in this env (null: the training env); only if eval_episodes > 0"""
    eval_env_kwargs: dict[str, Any] = field(default_factory=dict)
    """keyword arguments of the evaluation env (with eval_env=null, added to env_kwargs)"""
    eval_episodes: int = 0
    """episodes of the evaluation after training (0: none), written to out/eval.json"""

    def __post_init__(self):
        for name in ("num_envs", "total_steps", "num_steps", "num_minibatches", "update_epochs", "save_every"):
            check(getattr(self, name) >= 1, name, getattr(self, name), "an integer >= 1")
        check(self.save_every_s >= 0, "save_every_s", self.save_every_s, "seconds >= 0 (0: save every update)")
        check(self.stop_after >= 0, "stop_after", self.stop_after, "updates >= 0 (0: run to total_steps)")
        check(self.total_steps >= self.num_steps * self.num_envs, "total_steps", self.total_steps,
              f"at least one rollout, num_steps x num_envs = {self.num_steps * self.num_envs}")
        check(self.vectorization_mode in (None, "sync", "async", "vector_entry_point"), "vectorization_mode",
              self.vectorization_mode, "null, sync, async or vector_entry_point")
        check(self.device in ("auto", "cpu", "cuda"), "device", self.device, "auto, cpu or cuda")
        check(0 < self.gamma <= 1 and 0 <= self.gae_lambda <= 1, "gamma, gae_lambda", (self.gamma, self.gae_lambda),
              "gamma in (0, 1] and gae_lambda in [0, 1]")
        check(self.eval_episodes >= 0, "eval_episodes", self.eval_episodes, "an integer >= 0")
        check_out("out", str(Path(self.out) / "policy.safetensors"), (".safetensors",))

    @property
    def batch_size(self) -> int:
        """env steps of one rollout, all envs together"""
        return self.num_steps * self.num_envs

    @property
    def num_updates(self) -> int:
        return self.total_steps // self.batch_size


def make_envs(env_id: str, num_envs: int, env_kwargs: dict[str, Any] | None = None,
              vectorization_mode: str | None = None) -> gym.vector.VectorEnv:
    """`gym.make_vec`, refused with a message naming the env unless it has NEXT_STEP autoreset, image observations
    and Discrete actions (what the policy and the rollout below are written for)."""
    import worldsim  # noqa: F401  (registers worldsim/Craft2D-v0 and worldsim/Dream-v0)

    try:
        envs = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=vectorization_mode, **(env_kwargs or {}))
    except gym.error.Error as err:
        hint = (f"; if a package registers it when imported, name the package first: env=PACKAGE:{env_id} "
                "(Atari: env=ale_py:ALE/Breakout-v5)" if isinstance(err, gym.error.UnregisteredEnv) else "")
        raise ValueError(f"env={env_id!r}: {err}{hint}") from None
    except TypeError as err:  # a keyword the env does not take
        raise ValueError(f"env={env_id!r} with env_kwargs {env_kwargs}: {err}") from None
    try:
        mode = envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if mode != AutoresetMode.NEXT_STEP:
            raise ValueError(f"env={env_id!r}: its vector env resets with {mode}: expected AutoresetMode.NEXT_STEP, "
                             "Gymnasium's default")
        if not isinstance(envs.single_action_space, gym.spaces.Discrete):
            raise ValueError(f"env={env_id!r} has actions {envs.single_action_space}: expected a Discrete space")
        image_layout(envs.single_observation_space, f"env={env_id!r}")
    except ValueError:
        envs.close()
        raise
    return envs


def action_meanings(envs: gym.vector.VectorEnv) -> list[str]:
    base = envs.unwrapped
    try:
        meanings = base.get_action_meanings() if hasattr(base, "get_action_meanings") else \
            base.call("get_action_meanings")[0]  # a sync/async vector env: its sub-envs'
    except (AttributeError, IndexError):
        meanings = None
    n = int(envs.single_action_space.n)
    return [str(m) for m in meanings] if meanings is not None and len(meanings) == n else [str(i) for i in range(n)]


@dataclass
class Rollout:
    """A rollout's buffers, each shaped (num_steps, num_envs) + the item's shape."""

    obs: torch.Tensor  # uint8 frames: a quarter of the memory of floats
    actions: torch.Tensor
    logprobs: torch.Tensor
    rewards: torch.Tensor
    values: torch.Tensor
    terminated: torch.Tensor  # the episode ended for good: no bootstrap
    dones: torch.Tensor  # terminated or truncated: the advantage recursion stops here
    valid: torch.Tensor  # False on an autoreset step: its action was ignored, it is no transition

    @classmethod
    def empty(cls, num_steps: int, num_envs: int, obs_shape: tuple[int, ...], device: torch.device) -> Rollout:
        def zeros(dtype: torch.dtype, *shape: int) -> torch.Tensor:
            return torch.zeros((num_steps, num_envs, *shape), dtype=dtype, device=device)

        f = torch.float32
        return cls(zeros(torch.uint8, *obs_shape), zeros(torch.long), zeros(f), zeros(f), zeros(f), zeros(f),
                   zeros(f), zeros(torch.bool))


def collect(envs, policy: Policy, buf: Rollout, next_obs: torch.Tensor, next_done: np.ndarray,
            on_episode=None) -> tuple[torch.Tensor, np.ndarray]:
    """Fill `buf` with one rollout from (next_obs, next_done) and return them for the next. `next_done[i]`: sub-env i's
    last step ended an episode, so its next step is the autoreset step. `on_episode(i, return, length)` is called as
    episodes end (from RecordEpisodeStatistics' info["episode"], which counts no autoreset step)."""
    device = buf.obs.device
    for step in range(buf.obs.shape[0]):
        buf.obs[step] = next_obs
        buf.valid[step] = torch.from_numpy(~next_done)
        with torch.no_grad():
            action, logprob, _, value = policy.get_action_and_value(next_obs)
        buf.actions[step], buf.logprobs[step], buf.values[step] = action, logprob, value
        obs, reward, terminated, truncated, infos = envs.step(action.cpu().numpy())
        next_done = np.logical_or(terminated, truncated)
        buf.rewards[step] = torch.as_tensor(reward, dtype=torch.float32, device=device)
        buf.terminated[step] = torch.as_tensor(terminated, dtype=torch.float32, device=device)
        buf.dones[step] = torch.as_tensor(next_done, dtype=torch.float32, device=device)
        next_obs = torch.as_tensor(obs, device=device)
        if on_episode is not None and "_episode" in infos:
            for i in np.flatnonzero(infos["_episode"]):
                on_episode(step, int(i), float(infos["episode"]["r"][i]), int(infos["episode"]["l"][i]))
    return next_obs, next_done


def gae(buf: Rollout, next_value: torch.Tensor, gamma: float, gae_lambda: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, returns), (num_steps, num_envs). Under NEXT_STEP the observation after a done step is the episode's
    final one (the env resets only on the step after), so V of it bootstraps a truncation, and a termination gets 0.
    The recursion stops at every done, so an autoreset step's value never leaks into the episode before it."""
    advantages = torch.zeros_like(buf.rewards)
    lastgaelam = 0
    num_steps = buf.rewards.shape[0]
    for t in reversed(range(num_steps)):
        nextvalues = next_value if t == num_steps - 1 else buf.values[t + 1]
        delta = buf.rewards[t] + gamma * nextvalues * (1.0 - buf.terminated[t]) - buf.values[t]
        advantages[t] = lastgaelam = delta + gamma * gae_lambda * (1.0 - buf.dones[t]) * lastgaelam
    return advantages, advantages + buf.values


def flatten(buf: Rollout, advantages: torch.Tensor, returns: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(obs, actions, logprobs, advantages, returns, values) of the real transitions, in (step, env) order: an
    autoreset step's action was ignored by the env, so it is never trained on."""
    keep = buf.valid.reshape(-1).nonzero().flatten()  # (num_steps * num_envs,) -> (n,)
    obs = buf.obs.reshape((-1, *buf.obs.shape[2:]))[keep]
    return (obs, *(x.reshape(-1)[keep] for x in (buf.actions, buf.logprobs, advantages, returns, buf.values)))


def learn(args: Args, policy: Policy, optimizer: torch.optim.Optimizer, buf: Rollout, next_obs: torch.Tensor,
          rng: np.random.Generator) -> dict[str, float]:
    """One update's learning from a full rollout: GAE, then `update_epochs` passes of clipped-objective steps over
    minibatches (their order drawn from `rng`). Returns the update's figures for the log."""
    device = buf.obs.device
    with torch.no_grad():
        advantages, returns = gae(buf, policy.get_value(next_obs), args.gamma, args.gae_lambda)
    b_obs, b_actions, b_logprobs, b_advantages, b_returns, b_values = flatten(buf, advantages, returns)
    n = len(b_actions)
    minibatch_size = max(1, -(-n // args.num_minibatches))
    clipfracs, approx_kl = [], torch.zeros(())
    for epoch in range(args.update_epochs):
        b_inds = rng.permutation(n)
        for lo in range(0, n, minibatch_size):
            mb = torch.from_numpy(b_inds[lo:lo + minibatch_size]).to(device)
            _, newlogprob, entropy, newvalue = policy.get_action_and_value(b_obs[mb], b_actions[mb])
            logratio = newlogprob - b_logprobs[mb]
            ratio = logratio.exp()
            with torch.no_grad():  # http://joschu.net/blog/kl-approx.html
                approx_kl = ((ratio - 1) - logratio).mean()
                clipfracs.append(((ratio - 1.0).abs() > args.clip_coef).float().mean().item())
            mb_advantages = b_advantages[mb]
            if args.norm_adv and len(mb) > 1:
                mb_advantages = (mb_advantages - mb_advantages.mean()) / (mb_advantages.std() + 1e-8)
            clipped_ratio = torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef)
            pg_loss = torch.max(-mb_advantages * ratio, -mb_advantages * clipped_ratio).mean()
            if args.clip_vloss:
                v_clipped = b_values[mb] + (newvalue - b_values[mb]).clamp(-args.clip_coef, args.clip_coef)
                v_loss = 0.5 * torch.max((newvalue - b_returns[mb]) ** 2, (v_clipped - b_returns[mb]) ** 2).mean()
            else:
                v_loss = 0.5 * ((newvalue - b_returns[mb]) ** 2).mean()
            entropy_loss = entropy.mean()
            loss = pg_loss - args.ent_coef * entropy_loss + v_loss * args.vf_coef
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), args.max_grad_norm)
            optimizer.step()
        if args.target_kl is not None and approx_kl > args.target_kl:
            break
    var_y = b_returns.var().item() if n > 1 else 0.0
    explained_var = float("nan") if var_y == 0 else 1 - (b_returns - b_values).var().item() / var_y
    return {"transitions": n, "lr": optimizer.param_groups[0]["lr"], "value_loss": v_loss.item(),
            "policy_loss": pg_loss.item(), "entropy": entropy_loss.item(), "approx_kl": approx_kl.item(),
            "clipfrac": float(np.mean(clipfracs)), "explained_variance": explained_var}


def train(args: Args, quiet: bool = False) -> Path:
    """Train a policy as `args` says, or continue the run in args.out (module docstring); returns the path of the
    policy file, the policy so far when stop_after stopped the run (`finished` tells). `worldsim agent train` then
    evaluates it: worldsim.agents.evaluate.train_and_evaluate. Refused before any env is made: a run directory another
    process trains (RunInUse), or one that holds a run of other settings (a ValueError naming them)."""
    from worldsim.train.state import RunInUse, lock_run

    try:
        with lock_run(Path(args.out)):
            return _train(args, Path(args.out), quiet)
    except RunInUse as err:  # the lock's message names `worldsim train`'s key for the run directory
        raise RunInUse(str(err).replace("loop.out=", "out=")) from None


def _train(args: Args, out: Path, quiet: bool) -> Path:
    from worldsim.progress import Progress
    from worldsim.train.loop import _trim_log
    from worldsim.train.state import LOG

    say = (lambda text: None) if quiet else print
    say(show(args).rstrip("\n"))
    path, log_path = out / "policy.safetensors", out / LOG
    resumed = load_state(out, args)  # before any env is made: a run of other settings is refused at once
    update, global_step = (0, 0) if resumed is None else (resumed[1]["update"], resumed[1]["step"])
    if resumed is None:
        log_path.unlink(missing_ok=True)  # no state: the lines of a run killed before its first save go
    else:
        _trim_log(log_path, global_step)  # the lines past the save: steps this run takes again, or a torn line
    if update >= args.num_updates:
        say(f"{out} is at update {update:,} of {args.num_updates:,} (step {global_step:,} of total_steps="
            f"{args.total_steps:,}): nothing to train (raise total_steps to train it longer)")
        return path
    end = min(args.num_updates, update + args.stop_after) if args.stop_after else args.num_updates
    if resumed is not None:
        say(f"resuming {out} at update {update:,} (step {global_step:,}): {end - update:,} updates planned, to "
            f"update {end:,} of {args.num_updates:,}")
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = True
    rng = np.random.default_rng(args.seed)  # the minibatch order
    random.seed(args.seed)  # unused by PPO itself; saved and restored all the same
    device = pick_device(args.device)
    envs = gym.wrappers.vector.RecordEpisodeStatistics(
        make_envs(args.env, args.num_envs, args.env_kwargs, args.vectorization_mode))
    obs_shape = envs.single_observation_space.shape
    meta = {"obs_shape": list(obs_shape), "n_actions": int(envs.single_action_space.n),
            "channels_last": image_layout(envs.single_observation_space, args.env), "env": args.env,
            "env_kwargs": dict(args.env_kwargs), "action_meanings": action_meanings(envs)}
    policy = Policy(obs_shape, meta["n_actions"], meta["channels_last"]).to(device)
    optimizer = torch.optim.Adam(policy.parameters(), lr=args.learning_rate, eps=1e-5)
    buf = Rollout.empty(args.num_steps, args.num_envs, obs_shape, device)
    progress = None if quiet else Progress(args.num_updates * args.batch_size, "ppo", "steps", initial=global_step)
    recent: list[tuple[float, int]] = []  # the last 20 episodes, for the progress line
    saved = (update, global_step)  # of the last save
    learning = False  # the weights are between two updates': no save can be made of them
    log = open(log_path, "a")

    def on_episode(step: int, i: int, r: float, length: int) -> None:
        at = global_step + (step + 1) * args.num_envs  # env steps taken when it ended
        log.write(json.dumps({"kind": "episode", "step": at, "env": i, "return": r, "length": length}) + "\n")
        recent[:] = (recent + [(r, length)])[-20:]

    def save() -> None:
        nonlocal saved, last_save
        save_policy(path, policy, args, meta, global_step)  # first: a run whose state says it is done has its policy
        save_state(out, policy, optimizer, args, update, global_step, rngs)
        saved, last_save = (update, global_step), time.monotonic()

    try:
        # a resumed run meets new worlds: the envs' state was not saved (module docstring)
        obs, _ = envs.reset(seed=args.seed if resumed is None else resume_seed(args.seed, update))
        if resumed is not None:  # after the envs are made and reset: whatever they drew, the run draws as saved
            restore_state(*resumed, policy, optimizer, rng, device)
        next_obs, next_done = torch.as_tensor(obs, device=device), np.zeros(args.num_envs, bool)
        rngs = rng_states(rng, device)  # as the last finished update left them
        first_step, start, last_save = global_step, time.perf_counter(), time.monotonic()
        while update < end:
            began = time.perf_counter()
            if args.anneal_lr:  # a closed form of the update: the update is the schedule's state
                optimizer.param_groups[0]["lr"] = (1.0 - update / args.num_updates) * args.learning_rate
            next_obs, next_done = collect(envs, policy, buf, next_obs, next_done, on_episode)
            learning = True
            logs = learn(args, policy, optimizer, buf, next_obs, rng)
            rngs = rng_states(rng, device)
            update, global_step, learning = update + 1, global_step + args.batch_size, False
            sps = (global_step - first_step) / (time.perf_counter() - start)
            log.write(json.dumps({"kind": "update", "step": global_step, "update": update, **logs,
                                  "steps_per_s": sps, "update_s": time.perf_counter() - began}) + "\n")
            log.flush()
            if update % args.save_every == 0 or update == end or time.monotonic() - last_save >= args.save_every_s:
                save()
            if progress:
                line = "" if not recent else (f"return {np.mean([r for r, _ in recent]):.2f} "
                                              f"length {np.mean([length for _, length in recent]):.0f}")
                progress.update(global_step, line)
    except KeyboardInterrupt:
        if not learning and update > saved[0]:  # between two updates' learning: the weights are a finished update's
            save()
        kept = f"update {saved[0]:,} (step {saved[1]:,}) is saved in {out}" if saved[0] else "nothing was saved"
        raise KeyboardInterrupt(f"training interrupted at step {global_step:,}: {kept}; the same command continues "
                                "from the last save") from None
    finally:
        envs.close()
        log.close()
    if progress:
        progress.close(global_step)
    if end < args.num_updates:
        say(f"stopped at update {end:,} of {args.num_updates:,} (stop_after={args.stop_after}): the same command "
            "continues")
    return path
