"""What a PPO run (worldsim.agents.ppo) leaves on disk: the run's state, which a killed run resumes from
(`out/last.state.safetensors`), and the policy file (`out/policy.safetensors`: weights, with the config, spaces and
action meanings as JSON metadata, no pickles)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from worldsim.agents.policy import Policy, pick_device
from worldsim.config import to_dict

if TYPE_CHECKING:
    from worldsim.agents.ppo import Args

POLICY_FORMAT = 1  # of policy.safetensors; bump when the network or its metadata change
# settings a resumed run may change: its budget, its bookkeeping and the evaluation after it, never what it learns
# from or how (env_kwargs.device: where Dream-v0's world model runs, as `device` is where the policy does)
RESUMABLE = ("total_steps", "stop_after", "save_every", "save_every_s", "device", "out", "eval_env",
             "eval_env_kwargs", "eval_episodes", "env_kwargs.device")


def finished(args: Args, path: str | Path) -> bool:
    """Whether the policy file is the end of the run `args` describes (not one stop_after stopped part way)."""
    return read_policy_meta(path)["steps"] >= args.num_updates * args.batch_size


# ---- the run's state, which a killed run resumes from ------------------------------------------------------------
def rng_states(rng: np.random.Generator, device: torch.device) -> dict[str, Any]:
    """Every RNG a run draws from, as they are now: torch's (the actions), the device's, the minibatch order's and
    python's."""
    return {"torch": torch.get_rng_state(), "numpy": rng.bit_generator.state, "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def resume_seed(seed: int, update: int) -> int:
    """The envs' reset seed of a run resumed after `update` updates (sub-env i: it + i): one of its own for each
    update, so a run resumed twice does not meet the same worlds again."""
    return int(np.random.SeedSequence([seed, update]).generate_state(1)[0])


def save_state(out: Path, policy: Policy, optimizer: torch.optim.Optimizer, args: Args, update: int, step: int,
               rngs: dict[str, Any]) -> None:
    """`out/last.state.safetensors`, written atomically: the policy, Adam's moments, the RNGs, the update and step."""
    from worldsim.checkpoint import prefixed, save_checkpoint
    from worldsim.train.state import STATE, optimizer_tensors

    tensors, groups = optimizer_tensors(optimizer)
    tensors.update(prefixed(policy.state_dict(), "policy"))
    tensors["rng.torch"] = rngs["torch"]
    if rngs["cuda"] is not None:
        tensors["rng.cuda"] = rngs["cuda"]
    save_checkpoint(out / STATE, tensors, config=to_dict(args), update=update, step=step, param_groups=groups,
                    rng_numpy=rngs["numpy"], rng_python=rngs["python"])


def load_state(out: Path, args: Args) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """(tensors, metadata) of the run saved in `out`, or None for a new run. Refuses, naming the setting, a run saved
    with other settings than `args` (except RESUMABLE ones), and a policy whose training state is missing."""
    from worldsim.checkpoint import load_checkpoint
    from worldsim.train.state import STATE, settings_diff

    if not (out / STATE).exists():
        if (out / "policy.safetensors").exists():
            raise ValueError(f"{out} holds policy.safetensors but no {STATE}: a run saved without its training state "
                             f"(by a worldsim before resuming) or whose state was deleted cannot continue; choose "
                             f"another out= (or move the policy away to train it again)")
        return None
    tensors, meta = load_checkpoint(out / STATE)
    if "update" not in meta:
        raise ValueError(f"{out / STATE} is not the state of a PPO run (a world model's run?): choose another out=")

    said = settings_diff(meta["config"], to_dict(args), RESUMABLE, defaults=to_dict(type(args)))
    if said:
        raise ValueError(f"{out} holds a run with other settings: {said}; resume it with the same settings (only "
                         f"{', '.join(RESUMABLE)} may change) or choose another out=")
    return tensors, meta


def restore_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any], policy: Policy,
                  optimizer: torch.optim.Optimizer, rng: np.random.Generator, device: torch.device) -> None:
    from worldsim.checkpoint import component
    from worldsim.train.state import load_optimizer

    policy.load_state_dict(component(tensors, "policy"))
    load_optimizer(optimizer, {k: v.to(device) for k, v in tensors.items() if k.startswith("opt.")},
                   meta["param_groups"])
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and device.type == "cuda":
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)
    rng.bit_generator.state = meta["rng_numpy"]
    version, internal, gauss = meta["rng_python"]
    random.setstate((version, tuple(internal), gauss))


# ---- the policy file ---------------------------------------------------------------------------------------------
def save_policy(path: Path, policy: Policy, args: Args, meta: dict[str, Any], steps: int) -> Path:
    """Weights and metadata in one safetensors file, written under a temporary name and renamed over `path`."""
    from worldsim.checkpoint import save_checkpoint

    return save_checkpoint(path, policy.state_dict(), config=to_dict(args), policy_format=POLICY_FORMAT,
                           steps=steps, **meta)


def read_policy_meta(path: str | Path) -> dict[str, Any]:
    """The metadata of a policy file, checked; reads no weights. A clear ValueError for anything else."""
    from worldsim.checkpoint import read_metadata

    if not Path(path).is_file():
        raise FileNotFoundError(f"policy={str(path)!r}: no such file (train one with `worldsim agent train`, which "
                                f"writes OUT/policy.safetensors)")
    meta = read_metadata(path)  # a truncated or foreign file: CheckpointError (a ValueError) naming the file
    if "policy_format" not in meta:
        raise ValueError(f"policy={str(path)!r} is a worldsim checkpoint but not a policy (a world model? it plays as "
                         f"Dream-v0's checkpoint=): expected a file of `worldsim agent train`")
    if meta["policy_format"] != POLICY_FORMAT:
        raise ValueError(f"policy={str(path)!r} has policy_format {meta['policy_format']}: this worldsim reads "
                         f"{POLICY_FORMAT}; train it again")
    return meta


def load_policy(path: str | Path, device: str = "cpu") -> tuple[Policy, dict[str, Any]]:
    """(policy in eval mode, metadata), the network rebuilt from the metadata and checked against the weights."""
    from worldsim.checkpoint import load_checkpoint

    meta = read_policy_meta(path)
    try:
        policy = Policy(tuple(meta["obs_shape"]), int(meta["n_actions"]), bool(meta["channels_last"]))
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"policy={str(path)!r}: its metadata does not describe a network ({err}): the file is "
                         "damaged or was edited; train it again") from None
    tensors, _ = load_checkpoint(path)
    try:
        policy.load_state_dict(tensors)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise ValueError(f"policy={str(path)!r}: its weights do not fit the network its metadata describes ({first})"
                         f": the file is damaged or was edited; train it again") from None
    return policy.to(pick_device(device)).eval(), meta
