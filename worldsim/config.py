"""Hydra-style `key=value` overrides onto typed, frozen config dataclasses.

Every command's defaults live in one dataclass (with a `help` beside each field); the command line only overrides
them: `worldsim collect env=CartPole-v1 steps=20000 env_kwargs.max_episode_steps=200`. OmegaConf (from hydra-core)
checks names and types, so a typo or a wrong type is an error that names the key, never a silently ignored setting.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")


def parse_overrides(cls: type[T], overrides: list[str]) -> T:
    """Build `cls` from its defaults and `key=value` strings (nested keys with dots, lists as [a,b])."""
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ValueError(f"argument {item!r}: expected key=value, one of {[f.name for f in dataclasses.fields(cls)]}")
    try:
        base = OmegaConf.structured(cls)
        _writable(base)  # frozen dataclasses come in read-only; the objects built from the merge stay frozen
        merged = OmegaConf.merge(base, OmegaConf.from_dotlist(overrides))
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        first = str(err).splitlines()[0]
        key = getattr(err, "full_key", None)
        where = f"{key}: " if key and key not in first else ""
        raise ValueError(f"{where}{first} (known keys: {[f.name for f in dataclasses.fields(cls)]})") from None


def _writable(node: DictConfig) -> None:
    OmegaConf.set_readonly(node, False)
    for key in node.keys():
        if not OmegaConf.is_missing(node, key) and isinstance(node[key], DictConfig):
            _writable(node[key])


def describe(cls: type) -> str:
    """One line per field: name=default and its help, for `--help`."""
    lines = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "???")
        lines.append(f"  {f.name}={default!r}\n      {f.metadata.get('help', '')}")
    return "\n".join(lines)


def to_dict(cfg: Any) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)


def show(cfg: Any) -> str:
    """The resolved config as YAML, printed at the start of every run."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
