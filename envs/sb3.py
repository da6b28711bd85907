"""Stable-Baselines3 on Gymnasium 1.x vector envs, Dream-v0's native batched one included: `SB3VecEnv`.

    import gymnasium as gym
    from stable_baselines3 import PPO
    from worldsim.envs.sb3 import SB3VecEnv

    env = SB3VecEnv(gym.make_vec("worldsim/Dream-v0", num_envs=16))
    PPO("CnnPolicy", env, n_steps=128).learn(total_timesteps=100_000)

SB3 wraps image observations (H, W, 3) in its VecTransposeImage itself, so CnnPolicy gets them channel-first. SB3's
`make_vec_env("worldsim/Dream-v0", n_envs=16)` works too, but steps 16 single worlds one after the other; this adapter
steps them as one batched world-model step (README, "Agents": measured env-steps/s of both).

The two conventions of autoreset: Gymnasium 1.x's NEXT_STEP (a done step returns the episode's last observation; the
*next* step resets that sub-env, ignoring its action) and SB3's same-step one (a done step returns the new episode's
first observation, the last one in `infos[i]["terminal_observation"]`, and every action acts). The adapter converts:
- at a done step it puts the returned observation in `terminal_observation`, `TimeLimit.truncated` = truncated and not
  terminated, `episode` = {"r", "l", "t"} (SB3's ep_info_buffer reads it), then resets the done sub-envs at once with
  Gymnasium's partial reset, `reset(options={"reset_mask": dones})`, so SB3 gets their first observations;
- a vector env without partial resets (today's DreamVectorEnv, whose worlds step in lockstep) cannot give a first
  observation without a step. There the done step returns the last observation, and the next step is the env's own
  autoreset: SB3's action for that sub-env is ignored and the transition it records (last frame -> first frame,
  reward 0, not done) is no move of the game. One such transition per episode (1 in 1001 steps at Dream-v0's time
  limit); `partial_reset` below says which case an adapter is in, and a warning says it once.
- a SAME_STEP vector env already resets in the step; its `final_obs`/`final_info` become `terminal_observation` and
  the sub-env's info.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvStepReturn

from worldsim.agents.evaluate import info_of


def _supports_partial_reset(env: gym.vector.VectorEnv) -> bool:
    """Gymnasium's own sync and async vector envs reset single sub-envs (reset_mask, Gymnasium >= 1.1)."""
    return isinstance(env.unwrapped, (gym.vector.SyncVectorEnv, gym.vector.AsyncVectorEnv))


class SB3VecEnv(VecEnv):
    """A Gymnasium 1.x `VectorEnv` as Stable-Baselines3's `VecEnv`: spaces of one env, same-step autoreset, per-env
    info dicts with `terminal_observation`, `TimeLimit.truncated` and `episode`. `partial_reset` (None: detected)
    says whether the env resets single sub-envs with `reset(options={"reset_mask": ...})` (module docstring)."""

    def __init__(self, env: gym.vector.VectorEnv, partial_reset: bool | None = None):
        if not isinstance(env, gym.vector.VectorEnv):
            raise TypeError(f"SB3VecEnv wraps a gymnasium.vector.VectorEnv (gym.make_vec(...)), got "
                            f"{type(env).__name__}; for single envs SB3's own DummyVecEnv is the adapter")
        self.env = env
        self.mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if self.mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
            raise ValueError(f"a vector env with autoreset mode {self.mode}: expected NEXT_STEP (Gymnasium's default) "
                             "or SAME_STEP")
        self.partial_reset = _supports_partial_reset(env) if partial_reset is None else bool(partial_reset)
        if self.mode == AutoresetMode.NEXT_STEP and not self.partial_reset:
            warnings.warn(f"{type(env.unwrapped).__name__} cannot reset single sub-envs (reset_mask): after each "
                          "episode SB3 records one transition whose action the env ignored (worldsim.envs.sb3)",
                          stacklevel=2)
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)
        self._actions: np.ndarray | None = None
        self._pending = np.zeros(self.num_envs, bool)  # no partial reset: the env resets these on its next step
        self._returns, self._lengths = np.zeros(self.num_envs), np.zeros(self.num_envs, np.int64)
        self._starts = np.full(self.num_envs, time.perf_counter())

    # ---- the VecEnv interface ----------------------------------------------------------------------------------
    def reset(self) -> np.ndarray:
        seeds = None if all(s is None for s in self._seeds) else self._seeds
        options = self._options[0] if any(self._options) else None  # one vector env: the first env's options
        obs, infos = self.env.reset(seed=seeds, options=options)
        self.reset_infos = [info_of(infos, i) for i in range(self.num_envs)]
        self._reset_seeds()
        self._reset_options()
        self._pending[:] = False
        self._returns[:], self._lengths[:], self._starts[:] = 0.0, 0, time.perf_counter()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, terminated, truncated, infos = self.env.step(self._actions)
        obs, rewards = np.array(obs), np.asarray(rewards, np.float32)
        dones = np.logical_or(terminated, truncated)
        same_step = self.mode == AutoresetMode.SAME_STEP
        out = [info_of({k: v for k, v in infos.items() if k not in ("final_obs", "_final_obs", "final_info",
                                                                    "_final_info")}, i) for i in range(self.num_envs)]
        # an env autoresetting on this step (no partial reset): its action was ignored; no step of the episode
        moved = ~self._pending
        self._returns[moved] += rewards[moved]
        self._lengths[moved] += 1
        self._pending[:] = False
        for i in np.flatnonzero(dones):
            final = infos["final_obs"][i] if same_step else obs[i].copy()
            if same_step and "final_info" in infos:
                out[i] = info_of(infos["final_info"], i)
            out[i]["terminal_observation"] = final
            out[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            out[i]["episode"] = {"r": float(self._returns[i]), "l": int(self._lengths[i]),
                                 "t": round(time.perf_counter() - self._starts[i], 6)}
            self._returns[i], self._lengths[i], self._starts[i] = 0.0, 0, time.perf_counter()
        if dones.any() and not same_step:
            if self.partial_reset:
                first, reset_infos = self.env.reset(options={"reset_mask": dones.copy()})
                obs[dones] = np.asarray(first)[dones]
                for i in np.flatnonzero(dones):
                    self.reset_infos[i] = info_of(reset_infos, i)
            else:
                self._pending[dones] = True
        return obs, rewards, dones, out

    def close(self) -> None:
        self.env.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        frames = self.env.render()
        return list(frames) if frames is not None else [None] * self.num_envs

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """The sub-envs' attribute (sync/async vector envs); a native vector env's own, once per index."""
        idx = self._get_indices(indices)
        if attr_name == "render_mode":
            return [self.env.render_mode for _ in idx]
        if hasattr(self.env.unwrapped, "get_attr"):
            values = self.env.unwrapped.get_attr(attr_name)
            return [values[i] for i in idx]
        value = getattr(self.env.unwrapped, attr_name)  # AttributeError for a name it lacks, as SB3 expects
        return [value for _ in idx]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        idx = list(self._get_indices(indices))
        base = self.env.unwrapped
        if hasattr(base, "set_attr"):
            current = list(base.get_attr(attr_name))
            for i in idx:
                current[i] = value
            base.set_attr(attr_name, current)
        elif idx == list(range(self.num_envs)):
            setattr(base, attr_name, value)
        else:
            raise ValueError(f"set_attr({attr_name!r}) for sub-envs {idx}: {type(base).__name__} is one object for "
                             f"all {self.num_envs} of them; set it for all (indices=None)")

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list[Any]:
        """The sub-envs' method (sync/async vector envs, through `call`); a native vector env's own, called once."""
        idx = self._get_indices(indices)
        base = self.env.unwrapped
        if hasattr(base, "call"):
            results = base.call(method_name, *method_args, **method_kwargs)
            return [results[i] for i in idx]
        result = getattr(base, method_name)(*method_args, **method_kwargs)
        return [result for _ in idx]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        idx = self._get_indices(indices)
        envs = getattr(self.env.unwrapped, "envs", None)  # a sync vector env's sub-envs; none in a native one
        if envs is None:
            return [False for _ in idx]

        def wrapped(env) -> bool:
            while isinstance(env, gym.Wrapper):
                if isinstance(env, wrapper_class):
                    return True
                env = env.env
            return False

        return [wrapped(envs[i]) for i in idx]
