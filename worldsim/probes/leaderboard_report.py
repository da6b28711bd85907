"""What `worldsim leaderboard` (worldsim.probes.leaderboard) writes beside its rows: the machine it ran on, and
leaderboard.md, the table a person reads."""

from __future__ import annotations

import platform
import re
from pathlib import Path

import numpy as np


def machine(device: str) -> dict:
    """The CPU, torch and its threads, the device and GPU, and python: what a row's latency was timed on."""
    import torch

    from worldsim.device import resolve_device

    cpu = platform.processor() or platform.machine()
    try:
        names = re.findall(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = names[0].strip() if names else cpu
    except OSError:
        pass
    dev = resolve_device(device)
    return {"cpu": cpu, "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "device": str(dev),
            "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None, "python": platform.python_version()}


def markdown(doc: dict) -> str:
    """leaderboard.md: the settings, the table, and what its columns mean."""
    fams = doc["families"]
    s, m = doc["settings"], doc["machine"]
    head = ["model", *fams, "mean", "id", "ood", "actions recognised", "L/R swaps", "step ms (batch 1)", "parameters"]
    lines = ["# Probe leaderboard", "",
             f"Probes: suite {s['suite']}{' (quick)' if s['quick'] else ''}, {s['seeds']} sampling seed(s), scenario "
             f"draw {s['seed']}, view {s['view_width']}x{s['view_height']} tiles. Machine: {m['cpu']}"
             f"{', ' + m['gpu'] if m['gpu'] else ''}, torch {m['torch']} ({m['torch_threads']} threads, "
             f"{m['device']}), {doc['date'][:10]}.", "",
             "| " + " | ".join(head) + " |", "|" + "|".join([":---"] + ["---:"] * (len(head) - 1)) + "|"]
    notes = [r for r in doc["rows"] if r["note"]]
    for r in doc["rows"]:
        name = r["name"] + (f" [{notes.index(r) + 1}]" if r["note"] else "")
        ctrl = [_pct(r["actions_recognised"]), _pct(r["left_right_swaps"])]
        cells = [name, *(_score(r["families"].get(f, {}).get("score")) for f in fams), _score(r["mean"]),
                 _score(r["id"]), _score(r["ood"]), *ctrl, _ms(r["latency_ms"]), _count(r["parameters"])]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [""] + [f"[{i + 1}] {r['name']}: {r['note']}" for i, r in enumerate(notes)] + ([""] if notes else [])
    lines.append("Scores are normalised per probe: 0 is the best trivial predictor (copy-last, mean frame, the "
                 "model's own rollout under shuffled actions), 1 the engine; id / ood: the mean over families in / out "
                 "of the training distribution. Step ms: the median of a batch-1 `step` (the engine: Craft2D-v0's "
                 "own step and render). Parameters: learned weights (n/a: not known).")
    return "\n".join(lines) + "\n"


def _score(x) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.2f}"


def _pct(x) -> str:
    return "–" if x is None else f"{x:.0%}"


def _ms(x) -> str:
    return "–" if x is None else f"{x:.1f}" if x >= 10 else f"{x:.2f}" if x >= 0.01 else "<0.01"


def _count(n) -> str:
    if n is None:
        return "n/a"
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)
