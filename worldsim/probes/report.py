"""probes.md: the probe results for a person, with an image strip per probe and the curves as plots."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from worldsim.plot import Series, save_chart
from worldsim.probes.score import finite_mean, percent

QUESTIONS = {
    "permanence": "Does an object that leaves the view come back when the player returns? (swept over the steps "
                  "walked away, k, from inside the model's context to far beyond it)",
    "causality": "Does a mined or placed block stay changed, with its HUD count, 1 to 100 steps later and after "
                 "walking away and back?",
    "physics": "Does sand fall when its support goes, does the player fall off a ledge and land from a jump, does an "
               "animal fall, does a wall stop a walk that a free path allows?",
    "consistency": "After A->B->A and A->B->C->A walks, do the returning frames show what the first pass showed?",
    "control": "From one state, does every action do what it does in the game (left goes left)?",
    "stability": "Over a long rollout (1,000 steps by default), do the frames stay valid sprites, keep moving, and keep "
                 "a day/night that changes smoothly and spends as long at each light level as the game's?",
    "reward": "Does the dream pay when, and only when, the game would (mining ore, chopping wood, breaking planks), "
              "and end the episode when the game ends it (lava)?",
}
SCALE = 2  # pixels per frame pixel in the strips
GAP = 2


def write_report(out: Path, summary: dict, cases, results) -> Path:
    """Write probes.md (and strips/*.png, plots/*.png) into `out`; returns the markdown path."""
    from worldsim.io import atomic_write_bytes

    (out / "strips").mkdir(exist_ok=True)
    (out / "plots").mkdir(exist_ok=True)
    lines = _header(summary)
    for fam, f in summary["families"].items():
        fam_cases = [(c, r) for c, r in zip(cases, results) if c.probe.family == fam]
        lines += ["", f"## {fam.capitalize()}: {_num(f['score'])}", "", QUESTIONS[fam], ""]
        lines += _plots(out, fam, fam_cases, summary)
        lines += ["| probe | split | model m | floor (from) | ceiling | score | PSNR model / copy-last | strip |",
                  "|---" * 8 + "|"]
        for c, r in fam_cases:
            e = r["json"]
            strip = _strip(out, c)
            score = f"{_num(e['score'])} ± {_num(e['score_std'])}" if e["informative"] else "n/a (floor ~ ceiling)"
            lines.append(f"| {e['name']} | {e['split']} | {_num(e['model']['mean'])} ± {_num(e['model']['std'])} | "
                         f"{_num(e['floor'])} ({e['floor_from'].replace('_', ' ')}) | {_num(e['ceiling']['mean'])} | "
                         f"{score} | {e['psnr']['model']:.1f} / {e['psnr']['copy_last']:.1f} dB | ![]({strip}) |")
        if fam in summary.get("moves", {}):
            v = summary["moves"][fam]
            spans = ", ".join(f"{percent(x)} at steps {s}" for s, x in v["by_steps"].items())
            lines += ["", f"The view moves as the engine's camera does on **{percent(v['model'])}** of the {v['told']} "
                          f"steps whose frames tell ({spans}; the engine under other seeds: {percent(v['ceiling'])}): "
                          "each step's move is the shift that best maps the frame before onto it. A view that stops "
                          "scrolling, or draws what sticks to the player, fails the walk's scored cells whatever the "
                          "model remembers."]
        if fam == "control" and summary.get("control"):
            lines += [""] + _control(summary["control"])
        if fam == "reward" and summary.get("reward"):
            lines += [""] + _reward(summary["reward"])
    lines += ["", "## How the scores are made", "", *_method()]
    path = out / "probes.md"
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
    return path


def _num(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.2f}"


def _header(summary: dict) -> list[str]:
    cfg = summary["config"]
    spec = (summary.get("model") or {}).get("spec")  # model=: its name, and where it came from
    who = f"`{summary.get('checkpoint', summary['predictor'])}`" + (f" (`model={spec}`)" if spec else "")
    lines = ["# worldsim probe report", "",
             "A world model is asked questions whose answers the real game (Craft2D) knows. Each probe starts from a "
             "scenario in the engine, shows the model a few real frames, then plays actions in both. Only what the "
             "engine changed is scored, on decoded tiles: **0 is the best trivial guess (copying the last frame, the "
             "mean frame, or the model itself fed shuffled actions), 1 is the engine**.", "",
             f"- model: {who}" + (f", {summary['denoise_steps']} solver step(s) a frame, context "
                                  f"{summary['context']} frames" if "denoise_steps" in summary else ""),
             f"- view: {_view(summary)}",
             f"- `worldsim probe suite={cfg['suite']} seeds={cfg['seeds']} seed={cfg['seed']}"
             + (" quick=true" if cfg["quick"] else "")
             + (f" view_width={cfg['view_width']} view_height={cfg['view_height']}" if summary["view"] != [8, 8]
                else "") + "`: "
             f"{len(summary['probes'])} probes x {cfg['seeds']} sampling seeds in {summary['seconds']['total']:.0f} s",
             "", "| family | question | score ± std | in distribution | out of distribution | probes |",
             "|---|---|---|---|---|---|"]
    for fam, f in summary["families"].items():
        lines.append(f"| {fam} | {QUESTIONS[fam].split('?')[0]}? | **{_num(f['score'])}** ± {_num(f['std'])} | "
                     f"{_num(f['id'])} | {_num(f['ood'])} | {f['informative']}/{f['probes']} |")
    stab = summary.get("stability")
    if stab:
        lines += ["", f"Tiles that still decode as valid sprites at step {stab['steps']}: **{stab['valid_last']:.1%}** "
                      f"(engine {stab['engine_valid_last']:.1%}). Stability's terms, each averaged over its probes "
                      f"and scored steps: live {stab['live']:.2f} (valid cells that change, against the engine's: "
                      f"low for a frozen world), continuity {stab['continuity']:.2f}, day/night "
                      f"{stab['daynight']:.2f} (low for a night that never ends)."]
    return lines


def _view(summary: dict) -> str:
    (w, h), (ph, pw, _) = summary["view"], summary["frame_shape"]
    line = f"{w}x{h} tiles ({pw}x{ph} px, W x H)"
    if summary.get("view_trained") is False:
        from worldsim.probes.predictors import frame_sizes

        line += (f", **a view the model was not trained at** (it was trained at "
                 f"{frame_sizes(summary['trained_views'])} px)")
    elif summary.get("view_trained"):
        line += ", a view the model was trained at"
    return line


def _strip(out: Path, c) -> str:
    """context | model | engine: the last context frame, then the scored steps, model above engine."""
    from PIL import Image, ImageDraw

    from worldsim.media import upscale

    run = 2 if c.probe.family == "control" else 0  # control: the run that walks right
    steps = list(c.probe.score_at)
    if len(steps) > 6:
        steps = [steps[i] for i in np.linspace(0, len(steps) - 1, 6).round().astype(int)]
    tr = c.traces[run]
    texts = [f"t={t}" for t in steps]
    if c.probe.family == "reward":  # the steps where the game pays or ends and the step after, with both rewards
        due = np.flatnonzero((tr.rewards != 0) | tr.terminated)[:3] + 1
        steps = sorted({int(t) for d in due for t in (d, d + 1) if t <= c.probe.steps}) or steps
        paid = c.events["model"][0][run, 0]
        texts = [f"t={t} r {paid[t - 1]:g}|{tr.rewards[t - 1]:g}" for t in steps]
    ctx = tr.context.frames[-1]
    model = [c.rows["model"][run, 0, t - 1] for t in steps]
    engine = [c.traces[run].frames[t - 1] for t in steps]
    h, w = ctx.shape[0] * SCALE, ctx.shape[1] * SCALE
    label_h = 14
    canvas = np.full((label_h + 2 * h + GAP, (len(steps) + 1) * (w + GAP) - GAP, 3), 255, np.uint8)
    for col, (top, bottom) in enumerate([(ctx, ctx)] + list(zip(model, engine))):
        x = col * (w + GAP)
        canvas[label_h:label_h + h, x:x + w] = upscale(top, SCALE)
        canvas[label_h + h + GAP:, x:x + w] = upscale(bottom, SCALE)
    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    for col, text in enumerate(["context"] + texts):
        draw.text((col * (w + GAP) + 2, 1), text, fill=(0, 0, 0))
    name = c.probe.name.replace("/", "_") + ".png"
    _save_png(img, out / "strips" / name)
    return f"strips/{name}"


def _save_png(img, path: Path) -> None:
    import io

    from worldsim.io import atomic_write_bytes

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def _plots(out: Path, fam: str, fam_cases, summary: dict) -> list[str]:
    entries = [r["json"] for _, r in fam_cases]
    if fam == "permanence":
        ks = sorted({e["params"]["k"] for e in entries})

        def by_k(key):
            return [finite_mean([e[key]["mean"] if isinstance(e[key], dict) else e[key] for e in entries
                                if e["params"]["k"] == k]) for k in ks]

        series = [Series("model", ks, by_k("model")), Series("engine (ceiling)", ks, by_k("ceiling"), style="dashed"),
                  Series("floor", ks, by_k("floor"), style="points")]
        ctx = summary.get("context")
        path = _chart(out, "permanence", series, "Permanence: cells right after walking k steps away and back"
                      + (f" (context {ctx} frames)" if ctx else ""), "k (steps walked away)")
        return [f"![permanence]({path})", ""]
    if fam == "causality":
        labels = list(entries[0]["curve"]["model"])
        xs = list(range(len(labels)))
        series = [Series(name, xs, [finite_mean([e["curve"][key][lab] for e in entries]) for lab in labels], style=st)
                  for name, key, st in (("model", "model", "line"), ("engine (ceiling)", "ceiling", "dashed"),
                                        ("copy last frame", "copy_last", "points"))]
        path = _chart(out, "causality", series, "Causality: the change still right at each check ("
                      + ", ".join(f"{i}: {lab}" for i, lab in enumerate(labels)) + ")", "check")
        return [f"![causality persistence]({path})", ""]
    if fam == "stability":
        lines = []
        for key, title in (("valid", "valid sprites"), ("live", "valid and changing cells (vs engine)"),
                           ("continuity", "day/night continuity"),
                           ("daynight", "time at each light level (vs engine)")):
            series = [Series(e["name"].split("/")[1], e["stability"]["steps"], e["stability"][key]) for e in entries]
            path = _chart(out, f"stability_{key}", series, f"Stability: {title}", "step", ylim=(0, 1.02))
            lines.append(f"![stability {key}]({path})")
        c = fam_cases[0][0]
        light = fam_cases[0][1]["got"]["model"]["light"][0]
        steps = np.arange(1, len(light) + 1)
        series = [Series("model", steps, light), Series("engine", steps, c.traces[0].light[c.probe.context_length:],
                                                        style="dashed")]
        path = _chart(out, "stability_light", series, "Light level over one rollout (0 day, 5 night)", "step",
                      ylim=None, ylabel="light level")
        lines.append(f"![light]({path})")
        return lines + [""]
    return []


def _chart(out: Path, name: str, series, title: str, xlabel: str, ylim=(0, 1.02), ylabel: str = "fraction") -> str:
    save_chart(out / "plots" / f"{name}.png", series, title=title, xlabel=xlabel, ylabel=ylabel, ylim=ylim,
               size=(720, 320))
    return f"plots/{name}.png"


def _control(ctrl: dict) -> list[str]:
    names = ctrl["actions"]
    lines = [f"Actions recognised (best match among the engine's outcomes): **{ctrl['accuracy']:.0%}**; left<->right "
             f"swaps: **{ctrl['left_right_swap']:.0%}**; PSNR gain over the model fed random actions "
             f"{ctrl['dpsnr_random']:+.2f} dB, over mirrored actions {ctrl['dpsnr_mirrored']:+.2f} dB.", "",
             "Confusion (row: action taken; column: the action whose engine outcome the model's frame matched; %):", "",
             "| taken \\ matched | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for name, row in zip(names, ctrl["confusion"]):
        lines.append(f"| {name} | " + " | ".join(f"{100 * v:.0f}" if v else "." for v in row) + " |")
    return lines


def _reward(reward: dict) -> list[str]:
    from worldsim.probes.reward import TOLERANCE

    def pct(x):
        return "n/a" if x is None else f"{x:.0%}"

    lines = [f"Reward events (pooled over probes and seeds, matched within ±{TOLERANCE} step): "
             f"{reward['events']} due, recall **{pct(reward['recall'])}**, precision **{pct(reward['precision'])}**; "
             f"false payments per 100 quiet steps: **{_num(reward['false_per_100_idle'])}** "
             f"(over {reward['idle_steps']} steps); endings caught: **{pct(reward['termination_recall'])}** of "
             f"{reward['endings']}" + (", false endings where none was due: "
                                       f"{reward['false_terminations']}" if reward["false_terminations"] else "")
             + "."]
    idle = reward.get("idle")
    if idle:
        verdict = "n/a" if idle["met"] is None else ("met" if idle["met"] else "**missed**")
        lines += ["", "| idle-return check | steps | worlds | idle agent's return | random play's return | ratio | "
                      "target |", "|---|---|---|---|---|---|---|",
                  f"| waiting (NOOP) in the model vs random play in the game | {idle['steps']} | {idle['rows']} | "
                  f"{idle['idle_return']:.3f} | {idle['random_return']:.3f} | {pct(idle['ratio'])} | "
                  f"<= {idle['target']:.0%}: {verdict} |"]
    return lines


def _method() -> list[str]:
    from worldsim.envs.craft2d.decoder import VALID_DISTANCE
    from worldsim.probes.score import MIN_SPAN, SHUFFLE_MATTERS

    return [
        "- A cell is right when it decodes to the engine's sprite (Craft2D's tile decoder) and lies within "
        f"{VALID_DISTANCE:g} grey levels (RMS) of it. Only cells the engine changed relative to the last context "
        "frame are scored; permanence and consistency keep only world tiles seen before (in the context, or on the "
        "first pass), and the wall probe adds the cells where its walk and the same walk on a free path differ.",
        "- PSNR (dB, capped at 60 a frame) of the whole frames at the scored steps is given beside m as a secondary "
        "figure: it rewards blur and near-copies, which is why it is not the score.",
        "- m: the share of scored cells right, pooled over a probe's runs and scored steps, mean ± std over sampling "
        "seeds. Ceiling: the engine itself under other RNG seeds (animals wander at random). Floor: the best of "
        "copy-last-frame, the context's mean frame, and the model's own rollout with the probe's actions shuffled "
        f"(counted where shuffling costs the engine at least {SHUFFLE_MATTERS:g} of accuracy).",
        "- score = (m - floor) / (ceiling - floor), clipped to [0, 1]; a family's score is the mean over its probes. "
        f"Probes whose ceiling is within {MIN_SPAN:g} of the floor are listed but left out of the means.",
        "- Stability scores, every 100 steps of 1,000, the share of cells that are valid sprites *and* differ from the "
        "last context frame (relative to the engine's share, at most 1), times the share of steps where the light "
        "moved at most one level, times how alike the time spent at each light level is so far in the rollout and in "
        "the engine (1 - total variation distance): a frozen or a dissolving world scores 0, a night that never ends "
        "low.",
        "- Reward scores, per probe, the F1 of reward events (steps where the dream pays at least half the game's "
        "smallest payment; a payment one step early or late still matches) and, where the game's episode ends, the "
        "F1 of the ending; their mean is m. The floor is a predictor that never pays and never ends (F1 0). Steps "
        "after the game's ending are not scored. The idle-return check waits (NOOP) in the model from ordinary "
        "starts of the game and divides the return by the game's random-play return over as many steps.",
        "- At a view larger than the default 8x8 tiles, every patch grows by the columns and rows the view adds, and "
        "the walks that take something out of view (permanence, causality, consistency) by the columns it adds on "
        "the side they leave by, so it is out of view as many steps as at the default view; probes keep the default "
        "view's k in their names, and their params record the steps walked.",
        "- In distribution: worlds the training data visited, patches in their own biome, by day. Out of "
        "distribution: world seeds no training run can have drawn, patches across a biome border, at night.",
    ]
