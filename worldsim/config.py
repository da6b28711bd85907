"""Hydra configs over typed, frozen config dataclasses.

Every command's defaults live in one dataclass (with a `help` beside each field); Hydra composes the command line
onto it: `worldsim collect env=CartPole-v1 steps=20000 env_kwargs.max_episode_steps=200`. A command may also select
a recipe, a YAML file of overrides kept in `configs/<command>/experiment/` of the checkout:

    worldsim train world experiment=craft2d_s optim.steps=500    # configs/train_world/experiment/craft2d_s.yaml

The dataclass is the schema, so a typo or a wrong type in a YAML file or on the command line is an error that names
the key, never a silently ignored setting. Hydra's override grammar applies (`+key=value` adds to a dict, `~key`
removes). The YAML files only select and override; nothing is defined twice.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import tempfile
import textwrap
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")
GROUP = "experiment"  # the config group of recipes under configs/<command>/


def configs_root() -> Path | None:
    """The `configs/` folder: $WORLDSIM_CONFIGS, else the copy a wheel installs as worldsim/configs, else the one beside
    the package in a checkout (None if none is there)."""
    env = os.environ.get("WORLDSIM_CONFIGS")
    here = Path(__file__).resolve().parent
    for root in [Path(env)] if env else [here / "configs", here.parent / "configs"]:
        if root.is_dir():
            return root
    return None


def recipes(command: str) -> list[str]:
    """Names of the recipes `experiment=NAME` can select for a command."""
    root = configs_root()
    folder = root / command / GROUP if root else None
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder and folder.is_dir() else []


def parse_overrides(cls: type[T], overrides: list[str], command: str | None = None) -> T:
    """Build `cls` from its defaults, the recipe chosen by `experiment=NAME` (from configs/<command>/experiment/) and
    `key=value` strings (nested keys with dots, lists as [a,b])."""
    from hydra import compose, initialize, initialize_config_dir
    from hydra.core.config_store import ConfigStore
    from hydra.errors import HydraException

    known = [f.name for f in dataclasses.fields(cls)]
    for item in overrides:
        if "=" not in item.lstrip("~") and not item.startswith("~") or item.startswith("="):
            raise ValueError(f"argument {item!r}: expected key=value, one of {known}")
    folder = configs_root() / command if command and configs_root() else None
    if any(o.startswith(f"{GROUP}=") for o in overrides) and not (command and recipes(command)):
        raise ValueError(f"{GROUP}=...: no recipes for {command or 'this command'}; they live in configs/"
                         f"{command or '<command>'}/{GROUP}/ of a worldsim checkout (set WORLDSIM_CONFIGS=DIR to "
                         "use another configs folder)")
    for chosen in (o.split("=", 1)[1] for o in overrides if o.startswith(f"{GROUP}=")):
        if chosen not in recipes(command):
            raise ValueError(f"{GROUP}={chosen}: no such recipe in {folder / GROUP}; expected one of "
                             f"{recipes(command)}")
    name = f"{cls.__module__}.{cls.__qualname__}".replace(".", "_")
    schema = OmegaConf.structured(cls)
    _writable(schema)  # frozen dataclasses come in read-only; the objects built from the composition stay frozen
    store = ConfigStore.instance()
    store.store(name=f"{name}_schema", node=schema)
    defaults: list[Any] = [f"{name}_schema", "_self_"]
    if folder is not None and recipes(command):
        defaults.append({GROUP: None})  # null: no recipe unless experiment=NAME; an unknown NAME is an error
    store.store(name=name, node={"defaults": defaults})
    try:
        init = (initialize_config_dir(config_dir=str(folder), version_base=None) if folder is not None
                and folder.is_dir() else initialize(config_path=None, version_base=None))
        with init:
            composed = compose(config_name=name, overrides=[_into_dicts(schema, o) for o in overrides])
        composed = OmegaConf.masked_copy(composed, known)  # drop Hydra's own `hydra` node and the group choice
        return OmegaConf.to_object(OmegaConf.merge(schema, composed))
    except (OmegaConfBaseException, HydraException) as err:
        raise ValueError(_explain(err, known, command).replace(f"In '{name}': ", "")) from None


def _explain(err: Exception, known: list[str], command: str | None) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
    message, cause = lines[0], err.__cause__
    if cause is not None and str(cause).strip():  # Hydra wraps OmegaConf's error, which has the reason and the key
        message = f"{message.rstrip(':')}: {str(cause).strip().splitlines()[0]}"
    elif message.endswith(":") and len(lines) > 1:  # the reason is on the next line
        message = f"{message} {lines[1]}"
    if "Could not override" in message or "Could not append" in message:
        message = f"{message} (no such key)"
    key = getattr(cause, "full_key", None) or getattr(err, "full_key", None)
    where = f"{key}: " if key and key not in message else ""
    hint = f"; recipes: {recipes(command)}" if command and recipes(command) else ""
    return f"{where}{message} (known keys: {known}{hint})"


def _into_dicts(schema: DictConfig, override: str) -> str:
    """`env_kwargs.world_width=64` or `env_kwargs={world_width: 64}` -> `++...`: a key inside a free-form dict field may be new,
    which plain Hydra overrides refuse (its schema is the dataclass, and a dict field has no fixed keys)."""
    if override[0] in "+~":
        return override
    path = override.split("=", 1)[0].split(".")
    node: Any = schema
    for part in path[:-1]:
        if not isinstance(node, DictConfig) or part not in node or OmegaConf.is_missing(node, part):
            return override
        node = node[part]
        if isinstance(node, DictConfig) and OmegaConf.get_type(node) is dict:
            return "++" + override
    last = path[-1]
    if isinstance(node, DictConfig) and last in node and not OmegaConf.is_missing(node, last) \
            and isinstance(node[last], DictConfig) and OmegaConf.get_type(node[last]) is dict:
        return "++" + override  # `env_kwargs={view_width: 12}`: the whole dict, whose keys are new
    return override


def _writable(node: DictConfig) -> None:
    OmegaConf.set_readonly(node, False)
    for key in node.keys():
        if not OmegaConf.is_missing(node, key) and isinstance(node[key], DictConfig):
            _writable(node[key])


def describe(cls: type) -> str:
    """Every key of `cls` for `--help`: `name=default` and its meaning, nested dataclasses' keys with dots
    (`optim.steps=4000`), from a field's `help` metadata or else the comment beside it in the source."""
    return "\n".join(_describe(cls, None, ""))


def _describe(cls: type, instance: Any, prefix: str) -> list[str]:
    comments = _field_comments(cls)
    lines = []
    for f in dataclasses.fields(cls):
        if instance is not None:
            default = getattr(instance, f.name)
        elif f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        meaning = f.metadata.get("help") or comments.get(f.name, "")
        if dataclasses.is_dataclass(default):  # a nested config: its own keys, with its defaults as set here
            lines += _describe(type(default), default, f"{prefix}{f.name}.")
            continue
        shown = "(required)" if default is dataclasses.MISSING or default == MISSING else _value(default)
        key = f"{prefix}{f.name}" + (".KEY" if isinstance(default, dict) else "")
        lines.append(f"  {key}={shown}" + ("\n" + textwrap.fill(meaning, 110, initial_indent=" " * 6,
                                                                  subsequent_indent=" " * 6) if meaning else ""))
    return lines


def _value(value: Any) -> str:
    """A default as it would be typed on the command line: null, true, [1,2], a bare string."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_value(v)}" for k, v in value.items()) + "}" if value else "{}"
    return str(value)


def _field_comments(cls: type) -> dict[str, str]:
    """{field: the comment beside it (and on the comment lines under it)} from the class's source: configs written
    nanoGPT-style keep their meaning in a comment, and --help should show it rather than repeat it elsewhere."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    comments: dict[str, str] = {}
    last = None
    for line in source.splitlines():
        field_line = re.match(r"\s+(\w+): [^#]*#\s?(.*)$", line)
        more = re.match(r"\s+#\s*(.*)$", line)
        if field_line:
            last = field_line.group(1)
            comments[last] = field_line.group(2).strip()
        elif more and last:
            comments[last] += " " + more.group(1).strip()
        else:
            last = None
    return comments


def check(ok: bool, name: str, value: Any, expected: str) -> None:
    """Refuse a config value at construction (from a dataclass's `__post_init__`), before any work starts, with a
    message that names the setting, its value and what it must be: `check(steps >= 1, "steps", steps, ">= 1")`."""
    if not ok:
        raise ValueError(f"{name}={value!r}: expected {expected}")


def check_guidance(config: Any) -> None:
    """Refuse a command's play overrides of guidance (probe, events, bench), whichever of them it has: scales null (the
    checkpoint's) or in [0, 100], the history window null or >= 1 cached frames."""
    for name in ("action_guidance", "history_guidance"):
        scale = getattr(config, name, None)
        check(scale is None or 0 <= scale <= 100, name, scale,
              "null (the checkpoint's) or a scale in [0, 100] (1: none)")
    window = getattr(config, "history_window", None)
    check(window is None or window >= 1, "history_window", window, "null (the checkpoint's) or cached frames >= 1")


def check_out(name: str, path: str, suffixes: tuple[str, ...]) -> None:
    """Refuse an output file at construction, not after the work that makes it: a suffix that cannot be written, or
    a folder this user cannot write to (missing folders are created later, so the nearest existing one decides)."""
    check(Path(path).suffix.lower() in suffixes, name, path, f"a file name ending in one of {suffixes}")
    folder = Path(path).absolute().parent
    while not folder.exists():
        folder = folder.parent
    check(folder.is_dir(), name, path, f"a path inside a folder, but {folder} is a file")
    try:  # a file made and removed: os.access says yes to root on a read-only mount or /proc, where writing fails
        fd, probe = tempfile.mkstemp(prefix=".worldsim-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        check(False, name, path, f"a folder this user can write to, but {folder} is not ({err.strerror}): choose "
                                 f"another {name}=")


def to_dict(cfg: Any) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)


def show(cfg: Any) -> str:
    """The resolved config as YAML, printed at the start of every run."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
