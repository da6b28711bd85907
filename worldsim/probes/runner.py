"""`worldsim probe`: run the probe suite on a checkpoint, or on any world model, and write probes.json and probes.md.

    worldsim probe [checkpoint=CKPT | model=MODULE:NAME] [suite=all|permanence+control] [seeds=4] [out=probes]
                   [quick=true] [view_width=8 view_height=8]       (model=: any model keeping `protocol.WorldModel`)

The engine plays every run once for the truth (seed 0) and once per sampling seed for the ceiling (its own variance,
where animals wander). The predictor under test plays every run once per sampling seed; all its runs of one length
go through the simulator as one batch. See `worldsim.probes.score` for what is scored and how it is normalised.
Everything plays at one view (`view_width` x `view_height` tiles): the engine, the floors and the model, which is
probed there whether or not it was trained there (probes.json says which: `view_trained`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from worldsim.config import check, check_guidance
from worldsim.envs.craft2d.tiles import N_ACTIONS
from worldsim.probes import protocol
from worldsim.probes import reward as rewarding
from worldsim.probes import score as scoring
from worldsim.probes.families import FAMILIES, Suite, build_suite
from worldsim.probes.predictors import (
    MIRROR, CopyLast, Engine, MeanFrame, Predictor, frame_sizes, load_model, reference,
)
from worldsim.probes.scenarios import Probe, View

REFERENCE_SEED = 0  # the engine run that is the truth; ceiling runs use seeds 1..seeds
WALKS = ("permanence", "consistency")  # the families where the player walks away and back: does the view follow?
QUICK = Suite(permanence_k=(6, 20), ood=1, causality_checks=(1, 10), causality_walk=6, consistency_k=(6,),
              control_repeat=2, stability_steps=60, stability_every=20, reward_idle=4, idle_rows=2, idle_steps=40)


@dataclass(frozen=True)
class ProbeConfig:
    checkpoint: str | None = field(default=None, metadata={"help": "world model to probe (default: the shipped one)"})
    model: str | None = field(default=None, metadata={
        "help": "or any world model keeping worldsim.probes.protocol, as MODULE:NAME (mypkg.mymodule:MyWorldModel, "
                "or path/to/file.py:MyWorldModel): a class or factory, called with model_kwargs"})
    model_kwargs: dict[str, Any] = field(default_factory=dict, metadata={"help": "keyword arguments of model="})
    suite: str = field(default="all", metadata={"help": f"all, or families joined by '+': {'+'.join(FAMILIES)}"})
    seeds: int = field(default=4, metadata={"help": "sampling seeds per run: scores are mean +- std over them"})
    seed: int = field(default=0, metadata={"help": "which draw of scenarios (worlds, places, objects, times)"})
    out: str = field(default="probes", metadata={"help": "directory for probes.json, probes.md and the images"})
    quick: bool = field(default=False, metadata={"help": "a reduced suite (fewer, shorter probes) for tests"})
    denoise_steps: int | None = field(default=None, metadata={"help": "solver steps a frame (default: the "
                                                                     "checkpoint's)"})
    history_sigma: float | None = field(default=None, metadata={
        "help": "noise level the history is shown at, in [0, 1) (default: the checkpoint's): a little can steady a "
                "long rollout"})
    action_guidance: float | None = field(default=None, metadata={
        "help": "classifier-free guidance on the action, a scale >= 0 (default: the checkpoint's; 1: none)"})
    history_guidance: float | None = field(default=None, metadata={
        "help": "guidance on the history older than the latest history_window frames, a scale >= 0 (default: the "
                "checkpoint's; 1: none)"})
    history_window: int | None = field(default=None, metadata={
        "help": "the latest cached frames the pass history guidance contrasts with sees (default: the checkpoint's)"})
    reencode: bool | None = field(default=None, metadata={
        "help": "cache every frame as the autoencoder encodes its picture, a dreamt one as the step shows it (default: "
                "the checkpoint's)"})
    device: str = field(default="auto", metadata={"help": "auto (CUDA when present), cpu or cuda"})
    batch: int = field(default=64, metadata={"help": "rows stepped together (at most a model's max_batch)"})
    collect_seed: int = field(default=0, metadata={"help": "seed of the training data's `worldsim collect`: its "
                                                           "worlds are the in-distribution ones"})
    report: bool = field(default=True, metadata={"help": "write probes.md with image strips and plots"})
    view_width: int = field(default=8, metadata={"help": "tiles across the view every run is played at, the HUD "
                                                         "included (Craft2D-v0's view_width; 12: 96 px wide)"})
    view_height: int = field(default=8, metadata={"help": "tiles down the view, the HUD row included (Craft2D-v0's "
                                                          "view_height; 12: 96 px high)"})
    teacher_forced: bool = field(default=False, metadata={
        "help": "suite=reward only: the checkpoint pays on the engine's own frames (its reward model or heads reading "
                "them), the dream's drift taken out"})
    one_step: bool = field(default=False, metadata={
        "help": "every frame dreamt one step ahead of the engine's own history, which the model remembers in place "
                "of its dream (teacher forcing): the families with the dream's drift taken out, the walks asking "
                "memory alone; copy-last then copies the engine's frame before each step; stability, a question of "
                "the model's own long rollouts, is left out"})

    def __post_init__(self):
        from worldsim.device import resolve_device  # here, not at the top: it imports torch

        check(self.seeds >= 1, "seeds", self.seeds, "at least 1 sampling seed")
        check(self.batch >= 1, "batch", self.batch, "an integer >= 1 (rows stepped together)")
        check(self.denoise_steps is None or self.denoise_steps >= 1, "denoise_steps", self.denoise_steps,
              "null (the checkpoint's) or an integer >= 1")
        check(self.history_sigma is None or 0 <= self.history_sigma < 1, "history_sigma", self.history_sigma,
              "null (the checkpoint's) or a noise level in [0, 1)")
        check_guidance(self)
        check(self.reencode is None or isinstance(self.reencode, bool), "reencode", self.reencode,
              "null (the checkpoint's), true or false")
        resolve_device(self.device)  # an unknown or absent device is refused here, before anything runs
        check(not (self.model and self.checkpoint), "model", self.model, f"a model or a checkpoint, not both "
              f"(checkpoint={self.checkpoint})")
        check(self.model or not self.model_kwargs, "model_kwargs", self.model_kwargs, "model=MODULE:NAME with them")
        # a checkpoint's settings: never silently ignored
        for key in ("denoise_steps", "history_sigma", "action_guidance", "history_guidance", "history_window",
                    "reencode"):
            check(not self.model or getattr(self, key) is None, key, getattr(self, key),
                  "null with model= (a checkpoint's setting; a model takes its own in model_kwargs)")
        self.families()
        self.view()
        check(not self.teacher_forced or (not self.model and self.families() == ("reward",)), "teacher_forced",
              self.teacher_forced,
              "false, or true with suite=reward and a checkpoint (on the engine's frames the other families would "
              "score the engine)")
        check(not self.one_step or not (self.model or self.teacher_forced), "one_step", self.one_step,
              "false, or true with a checkpoint and teacher_forced=false (a model= steps its own history)")

    def view(self) -> View:
        """The view every run is played at; a view the probes cannot take is refused, naming it."""
        return View(self.view_width, self.view_height)

    def families(self) -> tuple[str, ...]:
        names = FAMILIES if self.suite == "all" else tuple(s.strip() for s in str(self.suite).split("+") if s.strip())
        bad = [n for n in names if n not in FAMILIES]
        if bad or not names:
            raise ValueError(f"suite={self.suite!r}: expected 'all' or families joined by '+' (permanence+control), "
                             f"from {FAMILIES}")
        if self.one_step and self.suite == "all":
            return tuple(n for n in names if n != "stability")  # a question of the model's own long rollouts
        check(not (self.one_step and "stability" in names), "suite", self.suite,
              "families without stability with one_step=true (stability asks how the model's own long rollouts "
              "hold up; one step ahead of the engine's history there are none)")
        return names


@dataclass
class _Case:
    """One probe's truth and everything the predictor must roll out for it."""

    probe: Probe
    traces: list
    masks: list
    ref: list
    shuffled: np.ndarray  # (runs, T) the probe's actions, shuffled across runs and steps
    index: int
    shuffle_matters: bool = False
    rows: dict = field(default_factory=dict)  # kind -> (runs, replicas, T, H, W, 3) frames
    events: dict = field(default_factory=dict)  # kind -> (rewards, terminated), each (runs, replicas, T)
    got: dict = field(default_factory=dict)  # kind -> its measurements (_measure), each made once


def run(cfg: ProbeConfig, predictor=None, quiet: bool = False) -> dict:
    """Run the suite on `predictor`, a `Predictor` or a protocol model (default: `cfg.model`, else the checkpoint's
    world model), and write the results to `cfg.out`."""
    from worldsim.io import atomic_write_json

    started = time.perf_counter()
    view = cfg.view()
    suite = replace(QUICK if cfg.quick else Suite(), collect_seed=cfg.collect_seed, view=view)
    meta = {}
    if predictor is None:
        predictor, meta = _load(cfg)
    predictor = protocol.as_predictor(predictor, cfg.batch)
    if isinstance(predictor, protocol.Probed):  # a first reset and step, checked before the engine plays anything
        meta["model"] = predictor.check(rewarding.starts(protocol.CHECK_ROWS, cfg.seed, view))
    say = (lambda *a: None) if quiet else print
    if meta.get("model", {}).get("events") is False:
        say(f"note: {predictor.name} returns frames alone: it never pays and never ends (the reward family's floor)")
    if meta.get("view_trained") is False:
        say(f"note: {meta['checkpoint']} was trained at {frame_sizes(meta['trained_views'])} px (W x H), not at "
            f"{view}: probing it there anyway (probes.json: view_trained false)")
    probes = build_suite(cfg.families(), cfg.seed, suite)
    say(f"probing {predictor.name} at {view} on {len(probes)} probes x {cfg.seeds} seeds "
        f"({', '.join(cfg.families())})")
    cases = [_case(p, i) for i, p in enumerate(probes)]
    engine = Engine()
    seeds = np.arange(1, cfg.seeds + 1)
    _roll(engine, cases, "ceiling", seeds, _actions)
    _roll(engine, [c for c in cases if c.probe.family != "stability"], "engine_shuffled", seeds[:1], _shuffled)
    for c in cases:
        c.shuffle_matters = _shuffle_matters(c)
    timer = time.perf_counter()
    mine = seeds + 1000 * cfg.seed  # the predictor's sampling seeds: apart from the engine's, one set per draw
    _roll(predictor, cases, "model", mine, _actions, quiet)
    _roll(predictor, [c for c in cases if c.shuffle_matters], "model_shuffled", mine + 100, _shuffled, quiet)
    control = [c for c in cases if c.probe.family == "control"]
    _roll(predictor, control, "model_random", mine + 200, _random, quiet)
    _roll(predictor, control, "model_mirrored", mine + 300, _mirrored, quiet)
    paying = [c for c in cases if c.probe.family == "reward"]
    idle = (rewarding.idle_return(predictor, rewarding.starts(suite.idle_rows, cfg.seed, view), suite.idle_steps,
                                  mine[0] + 400 + np.arange(suite.idle_rows)) if paying else None)
    model_seconds = time.perf_counter() - timer
    results = [_score(c, suite, cfg.one_step) for c in cases]
    summary = {
        "predictor": predictor.name, "view": [view.width, view.height], "frame_shape": list(view.frame_shape),
        **meta, "config": _public(cfg), "suite": _public(suite),
        "families": _families(results, cfg.families()), "permanence": _by_distance(results),
        "control": _control(control), "moves": _moves(results),
        "stability": _stability([r["json"] for r in results if "stability" in r["json"]]),
        "reward": {**rewarding.summary([_measure(c, "model") for c in paying]), "idle": idle} if paying else {},
        "probes": [r["json"] for r in results],
        "seconds": {"total": round(time.perf_counter() - started, 1), "predictor": round(model_seconds, 1)},
    }
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.report:
        from worldsim.probes.report import write_report

        write_report(out, summary, cases, results)
    summary["seconds"]["total"] = round(time.perf_counter() - started, 1)
    atomic_write_json(out / "probes.json", _finite(summary))
    say(table(summary))
    say(f"wrote {out / 'probes.json'}" + (f" and {out / 'probes.md'}" if cfg.report else "") +
        f" in {summary['seconds']['total']:.0f} s")
    return summary


def _load(cfg: ProbeConfig) -> tuple[Predictor, dict]:
    if cfg.model:
        return protocol.load(cfg.model, cfg.model_kwargs, cfg.batch), {}
    return load_model(cfg.checkpoint, cfg.view(), denoise_steps=cfg.denoise_steps, history_sigma=cfg.history_sigma,
                      action_guidance=cfg.action_guidance, history_guidance=cfg.history_guidance,
                      history_window=cfg.history_window, reencode=cfg.reencode, device=cfg.device, batch=cfg.batch,
                      teacher_forced=cfg.teacher_forced, one_step=cfg.one_step)


def _case(probe: Probe, index: int) -> _Case:
    traces = [reference(r, REFERENCE_SEED) for r in probe.runs]
    actions = np.array([r.actions for r in probe.runs], np.int64)
    rng = np.random.default_rng([index, 17])
    shuffled = rng.permutation(actions.reshape(-1)).reshape(actions.shape)
    ref = scoring.reference_cells(probe, traces)
    return _Case(probe, traces, scoring.masks(probe, traces, ref), ref, shuffled, index)


def _actions(c: _Case) -> np.ndarray:
    return np.array([r.actions for r in c.probe.runs], np.int64)


def _shuffled(c: _Case) -> np.ndarray:
    return c.shuffled


def _random(c: _Case) -> np.ndarray:
    rng = np.random.default_rng([c.index, 29])
    return rng.integers(0, N_ACTIONS, _actions(c).shape)


def _mirrored(c: _Case) -> np.ndarray:
    return np.vectorize(lambda a: MIRROR.get(int(a), int(a)))(_actions(c))


def _roll(predictor: Predictor, cases: list[_Case], kind: str, seeds: np.ndarray, actions_of,
          quiet: bool = True) -> None:
    """Roll every run of every case once per seed, batching rows of equal context and length together."""
    from worldsim.progress import Progress

    groups: dict[tuple[int, int], list[tuple[_Case, int, int]]] = {}
    for c in cases:
        for j in range(len(c.probe.runs)):
            for r in range(len(seeds)):
                groups.setdefault((c.probe.context_length, c.probe.steps), []).append((c, j, r))
    total = sum(len(rows) * steps for (_, steps), rows in groups.items())
    what = {"model": "rollouts", "model_shuffled": "shuffled actions", "model_random": "random actions",
            "model_mirrored": "mirrored actions"}.get(kind, kind)
    progress = None if quiet or not total else Progress(total, f"{predictor.name}, {what}", "frames")
    done = 0

    def on_step(n: int) -> None:
        nonlocal done
        done += n
        progress.update(done)

    for rows in groups.values():
        contexts = [c.traces[j].context for c, j, _ in rows]
        actions = np.stack([actions_of(c)[j] for c, j, _ in rows])
        row_seeds = np.array([seeds[r] for _, _, r in rows])
        out = predictor.predict(contexts, actions, row_seeds, on_step=on_step if progress else None)
        for (c, j, r), f, paid, ended in zip(rows, out.frames, out.rewards, out.terminated):
            if kind not in c.rows:
                c.rows[kind] = np.zeros((len(c.probe.runs), len(seeds)) + f.shape, np.uint8)
                c.events[kind] = (np.zeros(c.rows[kind].shape[:3], np.float32), np.zeros(c.rows[kind].shape[:3], bool))
            c.rows[kind][j, r] = f
            c.events[kind][0][j, r], c.events[kind][1][j, r] = paid, ended
    if progress:
        progress.close(done)


def _shuffle_matters(c: _Case) -> bool:
    if c.probe.family == "stability":
        return False  # the long rollouts are scored on staying alive, which no action order decides
    ceiling = _measure(c, "ceiling")["m"]
    shuffled = _measure(c, "engine_shuffled")["m"]
    if not np.isfinite(ceiling).any():
        return False  # nothing scored at all: the probe is uninformative whatever the floor
    return scoring.finite_mean(shuffled) < scoring.finite_mean(ceiling) - scoring.SHUFFLE_MATTERS


def _measure(c: _Case, kind: str, suite: Suite | None = None) -> dict:
    """`kind`'s measurements on this probe, made once (decoding frames is most of the cost). `suite` is needed for
    stability probes only."""
    if kind not in c.got:
        if c.probe.family == "stability":
            c.got[kind] = scoring.stability(c.probe, c.traces[0], c.rows[kind][0], suite.stability_every)
        elif c.probe.family == "reward":
            c.got[kind] = rewarding.measure(c.probe, c.traces, *c.events[kind])
        else:
            m, per_step = scoring.accuracy(c.probe, c.ref, c.masks, c.rows[kind])
            c.got[kind] = {"m": m, "per_step": per_step}
    return c.got[kind]


def _score(c: _Case, suite: Suite, one_step: bool = False) -> dict:
    """The probe's score and report entry. `one_step`: the model's frames were each made from the engine's history,
    so copy-last copies the engine's frame before each step, and the walks' moves are read from it."""
    p = c.probe
    for kind, pred in (("copy_last", CopyLast()), ("mean_frame", MeanFrame())):
        contexts = [tr.context for tr in c.traces]
        out = pred.predict(contexts, _actions(c), np.zeros(len(contexts)))
        c.rows[kind], c.events[kind] = out.frames[:, None], (out.rewards[:, None], out.terminated[:, None])
    before = [np.concatenate([tr.context.frames[-1:], tr.frames[:-1]]) for tr in c.traces]  # (T, H, W, 3) each
    if one_step:
        c.rows["copy_last"] = np.stack(before)[:, None]  # (runs, 1, T, H, W, 3)
    got = {kind: _measure(c, kind, suite) for kind in c.rows if kind != "engine_shuffled"}  # that one: the floor rule
    floors = {k: scoring.finite_mean(got[k]["m"]) for k in ("copy_last", "mean_frame")}
    if "model_shuffled" in got:
        floors["shuffled_actions"] = scoring.finite_mean(got["model_shuffled"]["m"])
    floors = {k: (0.0 if not np.isfinite(v) else v) for k, v in floors.items()}
    floor = max(floors.values())
    ceiling = scoring.finite_mean(got["ceiling"]["m"])
    s, s_std, informative = scoring.normalise(got["model"]["m"], floor, ceiling)
    labels = p.labels or tuple(f"t={t}" for t in p.score_at)
    per_label = {k: _by_label(labels, got[k]["per_step"]) for k in ("model", "ceiling", "copy_last", "mean_frame")}
    entry = {
        "name": p.name, "family": p.family, "split": p.split, "params": p.params,
        "model": _stats(got["model"]["m"]), "ceiling": _stats(got["ceiling"]["m"]),
        "floor": floor, "floors": floors, "floor_from": max(floors, key=floors.get),
        "score": s, "score_std": s_std, "informative": informative,
        "scored_cells": int(sum(m.sum() for m in c.masks)), "curve": per_label,
        "psnr": {kind: _psnr(c, kind) for kind in ("model", "copy_last", "ceiling")},
    }
    if p.family in WALKS:  # does the view move as the engine's camera does?
        entry["moves"] = {kind: scoring.view_moves(c.traces[0], c.rows[kind][0],
                                                   before[0] if one_step and kind == "model" else None).tolist()
                          for kind in ("model", "ceiling")}
    if p.family == "stability":
        g = got["model"]
        entry["stability"] = {"steps": list(p.score_at), "valid": g["valid"].mean(0).tolist(),
                              "live": g["live"].mean(0).tolist(), "continuity": g["continuity"].mean(0).tolist(),
                              "daynight": g["daynight"].mean(0).tolist(),
                              "valid_last": float(g["valid"][:, -1].mean()),
                              "engine_valid_last": float(got["ceiling"]["valid"][:, -1].mean())}
    if p.family == "reward":  # the event counts, summed over sampling seeds
        entry["reward"] = {k: int(v.sum()) for k, v in got["model"]["counts"].items()}
    return {"json": entry, "got": got}


def _stability(entries: list[dict]) -> dict:
    """Stability's terms, each the mean over its probes and scored steps (the score's m is the mean of their product
    per step): which one a long rollout loses, a frozen world (live) or a night that never ends (daynight)."""
    if not entries:
        return {}
    keys = ("valid", "live", "continuity", "daynight", "valid_last", "engine_valid_last")
    return {**{k: float(np.mean([e["stability"][k] for e in entries])) for k in keys},
            "steps": entries[0]["stability"]["steps"][-1]}


def _psnr(c: _Case, kind: str) -> float:
    """Pixel PSNR (dB) of `kind`'s frames against the engine's at the scored steps: the secondary figure."""
    steps = np.array(c.probe.score_at) - 1
    truth = np.stack([tr.frames[steps] for tr in c.traces])  # (runs, S, H, W, 3)
    pred = c.rows[kind][:, :, steps]  # (runs, replicas, S, H, W, 3)
    return scoring.psnr_rows(pred, np.broadcast_to(truth[:, None], pred.shape))


def _by_label(labels, per_step: np.ndarray) -> dict[str, float]:
    out = {}
    for label in dict.fromkeys(labels):
        cols = [i for i, lab in enumerate(labels) if lab == label]
        vals = per_step[:, cols]
        out[label] = scoring.finite_mean(vals)
    return out


def _stats(m: np.ndarray) -> dict:
    m = np.asarray(m, np.float64)
    ok = m[np.isfinite(m)]
    return {"mean": float(ok.mean()) if len(ok) else float("nan"), "std": float(ok.std()) if len(ok) else float("nan"),
            "values": [float(v) for v in m]}


def _families(results: list[dict], names) -> dict:
    out = {}
    for fam in names:
        entries = [r["json"] for r in results if r["json"]["family"] == fam]
        useful = [e for e in entries if e["informative"]]

        def mean(es):
            return float(np.mean([e["score"] for e in es])) if es else float("nan")

        out[fam] = {"score": mean(useful), "id": mean([e for e in useful if e["split"] == "id"]),
                    "ood": mean([e for e in useful if e["split"] == "ood"]),
                    "std": float(np.mean([e["score_std"] for e in useful])) if useful else float("nan"),
                    "probes": len(entries), "informative": len(useful)}
    return out


def _by_distance(results: list[dict]) -> list[dict]:
    """Permanence by the steps walked away (k), as the family's score averages its probes: a memory is judged at each
    k (24 and 48 lie beyond a 16- or 32-frame window), which the family's one mean hides."""
    scores: dict[int, list[float]] = {}
    for e in (r["json"] for r in results):
        if e["family"] == "permanence" and e["informative"]:
            scores.setdefault(int(e["params"]["k"]), []).append(e["score"])
    return [{"k": k, "score": float(np.mean(v)), "probes": len(v)} for k, v in sorted(scores.items())]


def _moves(results: list[dict]) -> dict:
    """Per walking family, the share of steps told (score.view_moves) on which the view moved as the engine's camera
    did, the model's and the engine's own under other seeds, over the whole rollout and by its spans of steps."""
    spans = [f"{lo}-{hi}" if hi else f"{lo}+" for lo, hi in scoring.MOVE_SPANS]

    def share(c):  # (..., 2) counts [told, right]
        return float(c[..., 1].sum() / c[..., 0].sum()) if c[..., 0].sum() else float("nan")

    out = {}
    for fam in WALKS:
        got = [r["json"]["moves"] for r in results if r["json"]["family"] == fam]
        if got:
            model, ceiling = (sum(np.array(g[kind]) for g in got) for kind in ("model", "ceiling"))  # (spans, 2)
            out[fam] = {"model": share(model), "ceiling": share(ceiling), "told": int(model[:, 0].sum()),
                        "by_steps": {s: share(m) for s, m in zip(spans, model)}}
    return out


def _control(cases: list[_Case]) -> dict:
    """The per-action confusion matrix, the left<->right swap rate, and the PSNR gains over random and mirrored
    actions."""
    if not cases:
        return {}
    conf = np.mean([scoring.control_matrix(c.ref, c.rows["model"], c.masks) for c in cases], 0)
    from worldsim.envs.craft2d.tiles import ACTION_MEANINGS, Action

    pairs = [(Action.LEFT, Action.RIGHT), (Action.RIGHT, Action.LEFT), (Action.JUMP_LEFT, Action.JUMP_RIGHT),
             (Action.JUMP_RIGHT, Action.JUMP_LEFT)]
    truth = [np.stack([tr.frames for tr in c.traces]) for c in cases]  # (runs, T, H, W, 3)

    def gain(kind: str, runs=None) -> float:
        vals = []
        for c, t in zip(cases, truth):
            idx = list(range(len(c.traces))) if runs is None else runs
            for r in range(c.rows["model"].shape[1]):
                own = scoring.psnr_rows(c.rows["model"][idx, r], t[idx])
                vals.append(own - scoring.psnr_rows(c.rows[kind][idx, r], t[idx]))
        return float(np.mean(vals))

    mirrored = sorted(MIRROR)
    return {"actions": list(ACTION_MEANINGS), "confusion": conf.round(4).tolist(),
            "accuracy": float(np.trace(conf) / len(conf)),
            "left_right_swap": float(np.mean([conf[a, b] for a, b in pairs])),
            "dpsnr_random": gain("model_random"), "dpsnr_mirrored": gain("model_mirrored", mirrored)}


def _finite(obj):
    """NaN and inf become null: JSON has no NaN, and a reader should not have to guess."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _public(obj) -> dict:
    from dataclasses import asdict

    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(obj).items()}


def table(summary: dict) -> str:
    """The family scores as a text table."""
    lines = [f"{'family':<12} {'score':>6} {'+-':>5} {'id':>6} {'ood':>6} {'probes':>7}"]
    if summary.get("one_step"):
        lines.insert(0, "one step ahead of the engine's history (one_step=true): the model's drift taken out")
    for fam, f in summary["families"].items():
        lines.append(f"{fam:<12} {f['score']:>6.2f} {f['std']:>5.2f} {f['id']:>6.2f} {f['ood']:>6.2f} "
                     f"{f['informative']:>3}/{f['probes']:<3}")
    if summary.get("permanence"):
        lines.append("permanence by steps walked away: " + ", ".join(
            f"k={d['k']} {d['score']:.2f} ({d['probes']} probes)" for d in summary["permanence"]))
    if summary.get("moves"):
        lines.append("the view moves as the engine's camera does, on the steps its frames tell: " + "; ".join(
            f"{fam} {scoring.percent(v['model'])} (steps "
            + ", ".join(f"{s} {scoring.percent(x)}" for s, x in v["by_steps"].items())
            + f"; engine {scoring.percent(v['ceiling'])})" for fam, v in summary["moves"].items()))
    ctrl = summary.get("control")
    if ctrl:
        lines.append(f"control: actions recognised {ctrl['accuracy']:.0%}, left<->right swaps "
                     f"{ctrl['left_right_swap']:.0%}, PSNR gain over random actions {ctrl['dpsnr_random']:+.2f} dB, "
                     f"over mirrored {ctrl['dpsnr_mirrored']:+.2f} dB")
    stab = summary.get("stability")
    if stab:
        lines.append(f"stability: live {stab['live']:.2f} (valid cells that change, against the engine's), "
                     f"continuity {stab['continuity']:.2f}, day/night {stab['daynight']:.2f}; valid sprites "
                     f"{stab['valid']:.0%}, {stab['valid_last']:.0%} at step {stab['steps']} (engine "
                     f"{stab['engine_valid_last']:.0%})")
    if summary.get("reward"):
        lines.append("reward: " + rewarding.describe(summary["reward"]))
    return "\n".join(lines)

