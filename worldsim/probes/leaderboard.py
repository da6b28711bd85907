"""`worldsim leaderboard`: probe every world model of a list the same way, and rank them in one table.

    worldsim leaderboard experiment=craft2d [out=runs/leaderboard seeds=4 only=[engine,copy-last] force=false]

Each entry is a row: a worldsim checkpoint (`checkpoint: PATH`, or `checkpoint: shipped` for the model shipped in
the package), any protocol model (`model: MODULE:NAME` with `model_kwargs`, as `worldsim probe model=`), or a
reference (`reference: engine`, the ceiling: Craft2D itself; `reference: copy-last`, the floor every family is
normalised against). Every row is probed with the same settings into `out/<slug of its name>/probes.json`, then
timed and counted:

- **step latency**: milliseconds per `step` at batch 1, the median over `latency_steps` steps after a `reset` with 4
  real Craft2D frames (the probes' warm-up start at the probe view) and 3 untimed steps, random actions. For the
  engine it is the real Craft2D-v0 env step (game logic and rendering, what the ceiling costs a player), not the
  probes' `Engine` predictor, whose per-row state restoring would be timed too.
- **parameters**: a checkpoint's, counted from its safetensors header (no weights read): every tensor of the models
  (`ae.*`, `dit.*`) but their buffers (latent statistics, the reward head's threshold), and not its bank of start
  frames; a protocol model's `num_parameters` attribute if it has one, else n/a; copy-last 0; the engine n/a.

Resume: a row whose folder holds `probes.json` and a `row.json` made from the same entry, the same probe settings
and the same files (the checkpoint, the model's module and any file its model_kwargs name, by SHA-256) is reused,
not probed again, so a crashed or extended leaderboard probes only what is new (`force=true` probes again).
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.util
import json
import math
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from worldsim.config import check
from worldsim.envs.craft2d.tiles import N_ACTIONS
from worldsim.probes import protocol, runner
from worldsim.probes import reward as rewarding
from worldsim.probes.families import FAMILIES
from worldsim.probes.leaderboard_report import machine, markdown
from worldsim.probes.runner import ProbeConfig
from worldsim.probes.scenarios import View

SHIPPED = "shipped"  # `checkpoint: shipped`: the world model in the package (checkpoint.default_checkpoint)
REFERENCES = {"engine": None, "copy-last": "worldsim.probes.protocol:CopyLast"}  # the ceiling, then the floor
SUBJECTS = ("checkpoint", "model", "reference")  # an entry names exactly one
ENTRY_KEYS = ("name", *SUBJECTS, "model_kwargs", "note", "make")
FILE_KWARGS = re.compile(r"(^|_)(checkpoint|path)$")  # model_kwargs keys whose value is a file the model reads
CONTEXT_FRAMES = 4  # frames a latency reset shows: what every probe shows
WARMUP_STEPS = 3  # untimed steps before the latency steps: first-call allocations, caches filling
ROW_FILE = "row.json"  # beside a row's probes.json: its fingerprint, latency and parameters


def _default_entries() -> list[dict[str, Any]]:
    return [{"name": "engine", "reference": "engine"}, {"name": "copy-last", "reference": "copy-last"},
            {"name": "worldsim DiT (shipped)", "checkpoint": SHIPPED}]


@dataclass(frozen=True)
class Entry:
    """One row of the leaderboard, checked: what it probes and how to make it when its file is missing."""

    index: int
    name: str
    kind: str  # checkpoint | model | reference
    target: str  # the checkpoint's path, MODULE:NAME, or the reference's name
    model_kwargs: dict
    note: str = ""
    make: str = ""  # the command that makes the entry's missing file, said when it is missing

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-") or f"entry-{self.index}"

    @property
    def label(self) -> str:
        return f"entry {self.index} ({self.name!r})"

    def files(self) -> dict[str, tuple[str, Path | None]]:
        """The files this row's results depend on, besides worldsim: {key: (the entry's value, the file, None for a
        module that is not found)}: a checkpoint, a model's module, files its model_kwargs name."""
        if self.kind == "checkpoint":
            return {"checkpoint": (self.target, Path(self.target))}
        if self.kind != "model":
            return {}
        module = self.target.rpartition(":")[0]
        files = {"model": (self.target, Path(module) if module.endswith(".py") else _module_file(module))}
        return files | {f"model_kwargs.{k}": (v, Path(v)) for k, v in sorted(self.model_kwargs.items())
                        if FILE_KWARGS.search(k) and isinstance(v, str)}


@dataclass(frozen=True)
class LeaderboardConfig:
    entries: list[dict[str, Any]] = field(default_factory=_default_entries, metadata={
        "help": "the rows: each a dict with `name` and exactly one of `checkpoint: PATH` (a worldsim world model; "
                "`checkpoint: shipped` for the one in the package), `model: MODULE:NAME` (any protocol model, with "
                "optional `model_kwargs`) or `reference: engine|copy-last`; optional `note` (printed under the "
                "table) and `make` (the command that makes a missing file). The recipes hold the lists"})
    only: list[str] = field(default_factory=list, metadata={
        "help": "names (or folder slugs) of the entries to probe now (default: all); the others join the table if "
                "their folder holds results of these settings"})
    out: str = field(default="runs/leaderboard", metadata={
        "help": "folder of leaderboard.json, leaderboard.md and one folder of probes per row"})
    suite: str = field(default="all", metadata={"help": f"all, or families joined by '+': {'+'.join(FAMILIES)}"})
    seeds: int = field(default=4, metadata={"help": "sampling seeds per probe run, for every row"})
    seed: int = field(default=0, metadata={"help": "which draw of scenarios, for every row"})
    quick: bool = field(default=False, metadata={"help": "the reduced probe suite (tests, a first look)"})
    view_width: int = field(default=8, metadata={"help": "tiles across the view every row is probed at"})
    view_height: int = field(default=8, metadata={"help": "tiles down the view every row is probed at"})
    batch: int = field(default=64, metadata={"help": "rows a model is stepped together while probing"})
    device: str = field(default="auto", metadata={"help": "auto (CUDA when present), cpu or cuda: checkpoints "
                                                          "run there (a model takes its own in model_kwargs)"})
    latency_steps: int = field(default=50, metadata={"help": "batch-1 steps timed per row (the median is shown)"})
    report: bool = field(default=False, metadata={"help": "also write each row's probes.md with image strips"})
    force: bool = field(default=False, metadata={"help": "probe the chosen rows again, reusing no results"})

    def __post_init__(self):
        check(self.latency_steps >= 1, "latency_steps", self.latency_steps, "an integer >= 1")
        self.probe_config(None, self.out)  # the probe settings, checked as `worldsim probe` checks them
        entries = self.parsed()
        known = {e.name for e in entries} | {e.slug for e in entries}
        for name in self.only:
            check(name in known, "only", name, f"the name (or folder slug) of an entry, one of "
                  f"{[e.name for e in entries]}")
        for e in self.chosen():
            _check_files(e)

    def parsed(self) -> list[Entry]:
        """Every entry, checked; a bad one (or two of one name) is refused naming it."""
        check(len(self.entries) > 0, "entries", self.entries, "at least one entry (experiment=craft2d has a list)")
        entries = [_entry(i, raw) for i, raw in enumerate(self.entries)]
        seen: dict[str, Entry] = {}
        for e in entries:
            twin = seen.get(e.slug)
            check(twin is None, f"{e.label}: name", e.name, f"a name of its own: {twin.label if twin else ''} has "
                  f"the same folder {e.slug!r} under out=")
            seen[e.slug] = e
        return entries

    def chosen(self) -> list[Entry]:
        return [e for e in self.parsed() if not self.only or e.name in self.only or e.slug in self.only]

    def probe_config(self, entry: Entry | None, out: str | Path) -> ProbeConfig:
        """The settings `worldsim probe` gets for `entry`'s row, the same for every row but its subject."""
        subject: dict[str, Any] = {}
        if entry is not None and entry.kind == "checkpoint":
            subject = {"checkpoint": entry.target}
        elif entry is not None and entry.kind == "model":
            subject = {"model": entry.target, "model_kwargs": dict(entry.model_kwargs)}
        elif entry is not None and REFERENCES[entry.target]:  # copy-last, a protocol model of the suite's own
            subject = {"model": REFERENCES[entry.target]}
        return ProbeConfig(**subject, suite=self.suite, seeds=self.seeds, seed=self.seed, out=str(out),
                           quick=self.quick, device=self.device, batch=self.batch, report=self.report,
                           view_width=self.view_width, view_height=self.view_height)


def _entry(i: int, raw: Any) -> Entry:
    where = f"entry {i}"
    check(isinstance(raw, dict), where, raw, "a dict with name and one of checkpoint, model, reference")
    name = raw.get("name")
    check(isinstance(name, str) and name.strip() != "", f"{where}: name", name, "a non-empty string, the row label")
    where = f"entry {i} ({name!r})"
    unknown = sorted(set(raw) - set(ENTRY_KEYS))
    check(not unknown, f"{where}: keys", unknown, f"only {list(ENTRY_KEYS)}")
    given = [k for k in SUBJECTS if raw.get(k) not in (None, "")]
    check(len(given) == 1, f"{where}: {'+'.join(given) or 'subject'}", [raw.get(k) for k in given] or None,
          "exactly one of checkpoint: PATH (or shipped), model: MODULE:NAME, reference: engine|copy-last")
    kind, target = given[0], str(raw[given[0]])
    kwargs = raw.get("model_kwargs") or {}
    check(isinstance(kwargs, dict), f"{where}: model_kwargs", kwargs, "a dict of keyword arguments of model=")
    check(kind == "model" or not kwargs, f"{where}: model_kwargs", kwargs, "model: MODULE:NAME with them")
    if kind == "reference":
        check(target in REFERENCES, f"{where}: reference", target, f"one of {list(REFERENCES)}")
    elif kind == "checkpoint" and target == SHIPPED:
        from worldsim.checkpoint import default_checkpoint

        target = str(default_checkpoint())
    elif kind == "model":
        module, _, attr = target.rpartition(":")
        check(bool(module) and attr.isidentifier(), f"{where}: model", target,
              "MODULE:NAME, such as mypkg.mymodule:MyWorldModel or path/to/my_model.py:MyWorldModel")
    for key in ("note", "make"):
        check(isinstance(raw.get(key, ""), str), f"{where}: {key}", raw.get(key), "a string")
    return Entry(i, name, kind, target, dict(kwargs), raw.get("note", ""), raw.get("make", ""))


def _module_file(module: str) -> Path | None:
    """The source file of a dotted module, found as `protocol.load` will import it, or None if there is none."""
    if str(Path.cwd()) not in sys.path:  # protocol.load searches the current directory first: so does this
        sys.path.insert(0, str(Path.cwd()))
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):  # a parent package that is missing
        return None
    return Path(spec.origin) if spec and spec.origin and spec.origin not in ("built-in", "frozen") else None


def _check_files(e: Entry) -> None:
    """Every file `e` needs is there; a missing one is refused saying how to make it."""
    make = e.make or ("worldsim train world (or write checkpoint: shipped for the shipped model)"
                      if e.kind == "checkpoint" else "")
    for key, (value, path) in e.files().items():
        where = f"no module {value.rpartition(':')[0]!r} is importable from {Path.cwd()}" if path is None else \
            f"there is no file {path.absolute()}"
        check(path is not None and path.is_file(), f"{e.label}: {key}", value,
              f"a file that exists ({where})" + (f": make it with `{make}`" if make else ""))


def run(cfg: LeaderboardConfig, quiet: bool = False) -> dict:
    """Probe every chosen entry not already probed with these settings, time and count it, and write
    leaderboard.json and leaderboard.md to `cfg.out`; returns what leaderboard.json holds."""
    from worldsim.io import atomic_write_bytes, atomic_write_json

    say = (lambda *a: None) if quiet else print
    out = Path(cfg.out)
    chosen = {e.name for e in cfg.chosen()}
    rows = []
    for e in cfg.parsed():
        folder = out / e.slug
        mark = _fingerprint(cfg, e)
        stored = None if cfg.force and e.name in chosen else _stored(folder, mark)
        if stored is not None:
            say(f"{e.name}: reused {folder / 'probes.json'} (the same entry, files and settings)")
            rows.append(_row(e, folder, stored, reused=True))
        elif e.name in chosen:
            say(f"{e.name}: probing into {folder}")
            rows.append(_row(e, folder, _probe(cfg, e, folder, mark, quiet), reused=False))
        else:
            say(f"{e.name}: left out (not in only=, and {folder} holds no results of these settings)")
    rows.sort(key=_rank)
    doc = {"rows": rows, "settings": {k: v for k, v in asdict(cfg).items() if k not in ("entries", "only", "force")},
           "families": list(cfg.probe_config(None, out).families()), "machine": machine(cfg.device),
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    text = markdown(doc)
    atomic_write_json(out / "leaderboard.json", doc)
    atomic_write_bytes(out / "leaderboard.md", text.encode())
    say(text)
    say(f"wrote {out / 'leaderboard.json'} and {out / 'leaderboard.md'}")
    return doc


def _fingerprint(cfg: LeaderboardConfig, e: Entry) -> dict:
    """What a row's results depend on: reused only when every part is the same."""
    from worldsim import __version__
    from worldsim.device import resolve_device

    probe = cfg.probe_config(e, ".")
    settings = {k: getattr(probe, k) for k in ("suite", "seeds", "seed", "quick", "view_width", "view_height",
                                                "batch", "collect_seed")}
    files = {key: _sha256(path) for key, (_, path) in e.files().items()}
    return json.loads(json.dumps({"kind": e.kind, "target": e.target, "model_kwargs": e.model_kwargs,
                                  "probe": settings, "device": str(resolve_device(cfg.device)),
                                  "latency_steps": cfg.latency_steps, "files": files, "worldsim": __version__}))


def _sha256(path: Path | None) -> str | None:
    if path is None or not path.is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stored(folder: Path, mark: dict) -> dict | None:
    """The row's stored measurements if its probes.json and row.json were made with `mark`, else None."""
    try:
        stored = json.loads((folder / ROW_FILE).read_text())
        ok = stored.get("fingerprint") == mark and (folder / "probes.json").is_file()
    except (OSError, ValueError, AttributeError):
        return None
    return stored if ok else None


def _probe(cfg: LeaderboardConfig, e: Entry, folder: Path, mark: dict, quiet: bool) -> dict:
    """Probe, time and count one row; its row.json is written last, so a crash leaves nothing to reuse."""
    from worldsim.io import atomic_write_json

    (folder / ROW_FILE).unlink(missing_ok=True)
    probe = cfg.probe_config(e, folder)
    started = time.perf_counter()
    if e.kind == "reference" and e.target == "engine":
        from worldsim.probes.predictors import Engine

        runner.run(probe, predictor=Engine(), quiet=quiet)
        latency, parameters = _engine_latency(cfg), None
    elif e.kind == "checkpoint":
        from worldsim.probes.predictors import load_model

        runner.run(probe, quiet=quiet)  # the runner loads it: probes.json records the checkpoint as `worldsim probe`
        probed, _ = load_model(e.target, probe.view(), device=cfg.device, batch=1)
        latency = _latency(probed, cfg)
        parameters = _checkpoint_parameters(e.target, {"ae": probed.model.sim.ae, "dit": probed.model.sim.dit})
    else:  # a protocol model, copy-last among them
        probed = protocol.load(probe.model, probe.model_kwargs, cfg.batch)
        runner.run(probe, predictor=probed, quiet=quiet)
        latency = _latency(probed, cfg)
        count = getattr(probed.model, "num_parameters", None)
        parameters = 0 if e.kind == "reference" else \
            int(count) if isinstance(count, (int, np.integer)) and not isinstance(count, bool) else None
    stored = {"fingerprint": mark, "latency_ms": latency, "parameters": parameters,
              "seconds": round(time.perf_counter() - started, 1)}
    atomic_write_json(folder / ROW_FILE, stored)
    return stored


def _latency_start(cfg: LeaderboardConfig):
    """A real start at the probe view, and the actions to step from it: the same for every row."""
    start = rewarding.starts(1, cfg.seed, View(cfg.view_width, cfg.view_height))
    actions = np.random.default_rng([cfg.seed, 31]).integers(0, N_ACTIONS, WARMUP_STEPS + cfg.latency_steps)
    return start[0], actions


def _latency(probed: protocol.Probed, cfg: LeaderboardConfig) -> float:
    """Median ms of the model's own `step` at batch 1 (not the adapter's checks) after a reset on a real start."""
    ctx, actions = _latency_start(cfg)
    keep = min(CONTEXT_FRAMES, probed.context or CONTEXT_FRAMES)
    model = probed.model
    model.reset(ctx.frames[None, -keep:], ctx.actions[None, -keep:], 0)  # (1, T0, H, W, 3), (1, T0)
    took = []
    for a in actions:
        a = np.array([a], np.int64)  # (1,)
        t0 = time.perf_counter()
        model.step(a)  # numpy frames back: a GPU model has synchronised by then
        took.append(time.perf_counter() - t0)
    return float(np.median(took[WARMUP_STEPS:]) * 1e3)


def _engine_latency(cfg: LeaderboardConfig) -> float:
    """Median ms of Craft2D-v0's own step (logic and rendering) from the same start, restarting it if it ends."""
    ctx, actions = _latency_start(cfg)
    env = ctx.view.env()
    env.set_state(ctx.state)
    took = []
    for a in actions:
        t0 = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(int(a))
        took.append(time.perf_counter() - t0)
        if terminated or truncated:
            env.set_state(ctx.state)
    return float(np.median(took[WARMUP_STEPS:]) * 1e3)


def _checkpoint_parameters(path: str, modules: dict) -> int:
    """Elements of the checkpoint's model tensors (`prefix.*` for each of `modules`), from its header, less the
    modules' buffers; other tensors (the start bank) are data, not parameters."""
    from worldsim.checkpoint import read_header

    _, header = read_header(path)
    buffers = {f"{p}.{n}" for p, m in modules.items() for n, _ in m.named_buffers()}
    return sum(math.prod(shape) for name, (shape, _) in header.items()
               if name.split(".")[0] in modules and name not in buffers)


def _row(e: Entry, folder: Path, stored: dict, reused: bool) -> dict:
    """A row of leaderboard.json: the entry, its family scores from probes.json, and its measurements."""
    summary = json.loads((folder / "probes.json").read_text())
    families = {f: {k: v.get(k) for k in ("score", "id", "ood")} for f, v in summary["families"].items()}

    def mean(key: str) -> float | None:
        vals = [v[key] for v in families.values() if v[key] is not None]
        return float(np.mean(vals)) if vals else None

    control = summary.get("control") or {}
    return {"name": e.name, "kind": e.kind, "target": e.target, "model_kwargs": e.model_kwargs, "note": e.note,
            "probes": str(folder / "probes.json"), "predictor": summary.get("predictor"), "families": families,
            "mean": mean("score"), "id": mean("id"), "ood": mean("ood"),
            "actions_recognised": control.get("accuracy"), "left_right_swaps": control.get("left_right_swap"),
            "latency_ms": stored["latency_ms"], "parameters": stored["parameters"], "reused": reused,
            "probe_seconds": summary.get("seconds", {}).get("total")}


def _rank(row: dict) -> tuple:
    """The references first (engine, then copy-last), then models by mean family score, best first."""
    ref = list(REFERENCES).index(row["target"]) if row["kind"] == "reference" else len(REFERENCES)
    return ref, -row["mean"] if row["mean"] is not None else math.inf
