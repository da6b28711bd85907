"""`worldsim export` / `worldsim import`: datasets to and from Minari, Farama's dataset standard.

Minari stores each episode as T + 1 observations and T actions, rewards, terminations and truncations; worldsim's
rows (arrival convention) are the same numbers shifted by one, so the conversion is exact. Frames are stored raw
(`jpeg_encoding=False`). What Minari has no field for travels in `infos`, one entry per observation: the global
episode id, the player position and the caption (UTF-8 bytes: HDF5 has no unicode strings), and the worldsim
manifest rides in the dataset description as JSON. Export then import gives back identical arrays.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np
from omegaconf import MISSING

from worldsim.data.integrity import record_complete
from worldsim.data.shards import ShardWriter, dataset_manifest, open_dataset, shard_paths, write_manifest

_MARK = "worldsim dataset; manifest: "


@dataclass(frozen=True)
class ExportConfig:
    data: str = field(default=MISSING, metadata={"help": "worldsim dataset directory"})
    id: str = field(default=MISSING, metadata={"help": "Minari dataset id, 'namespace/name-v0'"})
    minari_path: str | None = field(default=None, metadata={"help": "Minari's datasets root (default: "
                                                                     "$MINARI_DATASETS_PATH or ~/.minari/datasets)"})
    author: str | None = field(default=None, metadata={"help": "recorded in the Minari metadata"})


@dataclass(frozen=True)
class ImportConfig:
    id: str = field(default=MISSING, metadata={"help": "Minari dataset id"})
    out: str = field(default=MISSING, metadata={"help": "new worldsim dataset directory"})
    minari_path: str | None = field(default=None, metadata={"help": "Minari's datasets root"})
    shard_steps: int = field(default=10_000, metadata={"help": "frames per shard"})


def _minari():
    try:
        import minari
    except ImportError:
        raise ImportError("Minari interchange needs the minari extra: pip install 'worldsim[minari]'") from None
    return minari


@contextmanager
def _datasets_root(path: str | None):
    """Point Minari at `path` for the duration (it reads MINARI_DATASETS_PATH at each call)."""
    if path is None:
        yield
        return
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(Path(path).resolve())
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH")
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def export_minari(cfg: ExportConfig) -> int:
    """Write the dataset at `cfg.data` as Minari dataset `cfg.id`; returns the number of episodes."""
    minari = _minari()
    from minari.data_collector import EpisodeBuffer

    manifest, shards = open_dataset(Path(cfg.data))
    buffers = []
    for shard in shards:
        a, captions = shard.arrays, shard.captions()
        for e in shard.meta["episodes"]:
            s, n = e["start"], e["length"]
            rows = slice(s, s + n)
            infos = {"episode_id": np.asarray(a["episode"][rows]), "seed": np.full(n, e["seed"], np.int64),
                     "caption": np.array([c.encode() for c in captions[s:s + n]]),
                     "agent": np.array([e["agent"].encode()] * n), "cut": np.full(n, e["cut"])}
            if "positions" in a:
                infos["positions"] = np.asarray(a["positions"][rows])
            buffers.append(EpisodeBuffer(
                id=len(buffers), seed=e["seed"], observations=np.asarray(a["frames"][rows]),
                actions=np.asarray(a["actions"][s + 1:s + n], np.int64),  # the action after frame t led to t + 1
                rewards=np.asarray(a["rewards"][s + 1:s + n]), terminations=np.asarray(a["terminated"][s + 1:s + n]),
                truncations=np.asarray(a["truncated"][s + 1:s + n]), infos=infos))
    with _datasets_root(cfg.minari_path):
        minari.create_dataset_from_buffers(
            cfg.id, buffers, action_space=gym.spaces.Discrete(len(manifest["action_meanings"])),
            observation_space=gym.spaces.Box(0, 255, tuple(manifest["frame_shape"]), np.uint8),
            algorithm_name=f"worldsim collect agent={manifest.get('agent')}", author=cfg.author,
            description=_MARK + json.dumps(manifest), jpeg_encoding=False)
    return len(buffers)


def import_minari(cfg: ImportConfig) -> int:
    """Write Minari dataset `cfg.id` as a worldsim dataset at `cfg.out`; returns the number of episodes."""
    minari = _minari()
    out = Path(cfg.out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"out={cfg.out!r} is not empty: import into a new directory")
    with _datasets_root(cfg.minari_path):
        local = minari.list_local_datasets()
        if cfg.id not in local:  # minari's own message suggests download=True: worldsim never downloads
            where = cfg.minari_path or os.environ.get("MINARI_DATASETS_PATH") or "~/.minari/datasets"
            raise ValueError(f"id={cfg.id!r}: no such Minari dataset in {where} (there: {sorted(local)}); worldsim "
                             "imports local datasets only: pass minari_path=DIR where it is")
        dataset = minari.load_dataset(cfg.id)
    obs_space, act_space = dataset.observation_space, dataset.action_space
    if not isinstance(act_space, gym.spaces.Discrete):
        raise ValueError(f"Minari dataset {cfg.id!r} has action space {act_space}: worldsim needs Discrete actions")
    if not (isinstance(obs_space, gym.spaces.Box) and obs_space.dtype == np.uint8 and len(obs_space.shape) == 3
            and obs_space.shape[2] == 3):
        raise ValueError(f"Minari dataset {cfg.id!r} has observations {obs_space}: worldsim needs (H, W, 3) uint8 "
                         f"frames")
    description = dataset.storage.metadata.get("description") or ""
    if description.startswith(_MARK):  # a worldsim dataset: its own manifest, as the builder would make it
        manifest = dataset_manifest(**{k: v for k, v in json.loads(description[len(_MARK):]).items()
                                       if k != "format_version"})
    else:  # a dataset from elsewhere: what Minari knows
        manifest = dataset_manifest(env=dataset.spec.env_spec.id if dataset.spec.env_spec else None, agent="minari",
                                    action_meanings=[str(i) for i in range(act_space.n)],
                                    frame_shape=obs_space.shape, captions=False)
    manifest["imported_from"] = f"minari:{cfg.id}"
    out.mkdir(parents=True, exist_ok=True)
    writer = ShardWriter(out, worker=0, index=0, frame_shape=tuple(obs_space.shape))
    n = -1
    for n, ep in enumerate(dataset.iterate_episodes()):
        infos = ep.infos or {}
        length = len(ep.observations)
        eid = infos.get("episode_id", np.full(length, n))
        captions = infos.get("caption")
        positions = infos.get("positions")
        for t in range(length):
            writer.add(ep.observations[t], -1 if t == 0 else int(ep.actions[t - 1]),
                       0.0 if t == 0 else float(ep.rewards[t - 1]), t > 0 and bool(ep.terminations[t - 1]),
                       t > 0 and bool(ep.truncations[t - 1]), int(eid[t]),
                       captions[t].decode() if captions is not None else "",
                       tuple(int(v) for v in positions[t]) if positions is not None else None)
        agent = infos["agent"][0].decode() if "agent" in infos else manifest.get("agent", "minari")
        seed = int(infos["seed"][0]) if "seed" in infos else n
        writer.end_episode(int(eid[0]), seed, agent, bool(infos["cut"][0]) if "cut" in infos else False)
        if len(writer) >= cfg.shard_steps:
            writer.flush()
    writer.flush()
    write_manifest(out, manifest)
    record_complete(out, shard_paths(out))
    return n + 1
