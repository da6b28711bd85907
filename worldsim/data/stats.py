"""What a dataset holds (`summarize`, printed by collect) and what a trajectory covered: how far the player
wandered and how often it came back over ground it had left."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from worldsim.data.shards import open_shard, read_manifest, shard_paths

AWAY = 16  # tiles: a return needs an excursion at least this far from the spot (two 64x64 views of 8 tiles)
CHANGES_READ = 1000  # mine and place steps decoded at most (evenly spread): ~10 s at one core; a share within ~3%


@dataclass(frozen=True)
class Coverage:
    steps: int
    wander: int  # span of columns visited, in tiles
    return_gaps: tuple[int, ...]  # one per return: steps since the player last stood on the column it came back to
    revisit_steps: int  # steps spent on columns last stood on before an excursion of at least `away` tiles


def coverage(xs: np.ndarray, away: int = AWAY) -> Coverage:
    """Returns in one episode of player columns `xs` (T,). Step t is a revisit when column x_t was last stood on at
    t' and the player went at least `away` tiles from x_t in between; consecutive revisit steps are one return."""
    xs = np.asarray(xs, np.int64)
    last_seen: dict[int, int] = {}
    gaps, revisit_steps, streak = [], 0, False
    for t, x in enumerate(xs.tolist()):
        t0 = last_seen.get(x, -1)
        revisit = t0 >= 0 and t - t0 > away and int(np.abs(xs[t0:t] - x).max()) >= away  # (cheap test first)
        if revisit:
            revisit_steps += 1
            if not streak:
                gaps.append(t - t0)
        streak = revisit
        last_seen[x] = t
    wander = int(xs.max() - xs.min()) if len(xs) else 0
    return Coverage(steps=len(xs), wander=wander, return_gaps=tuple(gaps), revisit_steps=revisit_steps)


def summarize(root: Path) -> dict:
    """Totals of a dataset on disk: frames, episodes, actions, returns, bytes, and Craft2D coverage."""
    manifest = read_manifest(root)
    meanings = manifest["action_meanings"]
    hist = np.zeros(len(meanings), np.int64)
    frames = transitions = disk = 0
    episodes, cut, returns, agents = 0, 0, [], {}
    wanders, gaps, revisit_steps, pos_steps = [], [], 0, 0
    for path in shard_paths(root):
        shard = open_shard(path, tuple(manifest["frame_shape"]))
        frames += shard.rows
        disk += sum(f["bytes"] for f in shard.meta["files"].values())
        actions = np.asarray(shard.arrays["actions"])
        hist += np.bincount(actions[actions >= 0], minlength=len(meanings))[:len(meanings)]
        positions = shard.arrays.get("positions")
        for e in shard.meta["episodes"]:
            episodes += 1
            transitions += e["length"] - 1
            agents[e["agent"]] = agents.get(e["agent"], 0) + 1
            if e["cut"]:
                cut += 1
            else:
                returns.append(e["ret"])
            if positions is not None:
                cov = coverage(np.asarray(positions[e["start"]:e["start"] + e["length"], 0]))
                wanders.append(cov.wander)
                gaps.extend(cov.return_gaps)
                revisit_steps += cov.revisit_steps
                pos_steps += cov.steps
    summary = {
        "frames": frames, "transitions": transitions, "episodes": episodes, "episodes_cut": cut,
        "action_histogram": dict(zip(meanings, hist.tolist())), "mean_return": float(np.mean(returns)) if returns
        else None, "bytes_on_disk": disk, "agents": agents,
    }
    if manifest.get("env", "").startswith("worldsim/Craft2D") and pos_steps:
        from worldsim.envs.craft2d.tiles import TILE_SIZE

        shape = manifest.get("frame_shape")
        if manifest.get("env_kwargs", {}).get("tile_size", TILE_SIZE) == TILE_SIZE and \
                manifest.get("native_frame_shape", shape) == shape:  # frames as the game drew them: decodable
            summary["changes"] = craft2d_changes(root, manifest)
    if pos_steps:
        summary["coverage"] = {
            "away_tiles": AWAY, "mean_wander_tiles": float(np.mean(wanders)), "max_wander_tiles": int(max(wanders)),
            "returns": len(gaps), "returns_per_1000_steps": 1000 * len(gaps) / pos_steps,
            "revisit_fraction": revisit_steps / pos_steps, "median_return_gap": float(np.median(gaps)) if gaps
            else None, "max_return_gap": int(max(gaps)) if gaps else None,
            "returns_after_64_steps": int(sum(g > 64 for g in gaps)),
        }
    return summary


def craft2d_changes(root: Path, manifest: dict, most: int = CHANGES_READ) -> dict:
    """What mining and placing left behind in Craft2D data, read from its frames: of the blocks mined, how many
    left open sky (a block that stood above the ground: a tree, a placed block) and how many a cave wall (mining into
    the ground, where nearly all of it happens when a player digs for its blocks); of the blocks placed, how many
    went into the open sky; and, for each mine and place action, of its steps read how many changed the tile (a press
    on air, on a solid tile or with empty hands changes nothing, and a model learns an action where it did). A step
    counts where the player, so the camera, stood still: the tile the player faced (or stood under or on) is decoded
    in the frames before and after. At most `most` such steps, evenly spread."""
    from worldsim.envs.craft2d.decoder import tile_decoder
    from worldsim.envs.craft2d.tiles import EMPTY, MINEABLE, PLACES_AS, Tile

    meanings = manifest["action_meanings"]
    reach = {meanings.index(name): d for name, d in (("mine", "ahead"), ("mine_up", (-1, 0)), ("mine_down", (1, 0)),
                                                      ("place", "ahead"), ("place_down", (1, 0)))}
    mines = {meanings.index(name) for name in ("mine", "mine_up", "mine_down")}
    steps = []  # (shard, row): each shard opened once, its frames memory-mapped and read only where picked
    for path in shard_paths(root):
        shard = open_shard(path, tuple(manifest["frame_shape"]), required=("actions", "positions"))
        actions, pos = np.asarray(shard.arrays["actions"]), np.asarray(shard.arrays["positions"])
        still = np.zeros(len(actions), bool)
        still[1:] = (pos[1:] == pos[:-1]).all(1) & (actions[1:] >= 0)  # a first frame's action is -1
        rows = np.flatnonzero(still & np.isin(actions, list(reach)))
        steps += [(shard, int(r)) for r in rows]
    picked = [steps[i] for i in np.linspace(0, len(steps) - 1, min(most, len(steps))).astype(int)] if steps else []
    decoder, placed_tiles = tile_decoder(), {int(t) for t in PLACES_AS.values()}
    out = {"steps": len(steps), "read": len(picked), "mined": 0, "mined_to_sky": 0, "placed": 0, "placed_in_sky": 0,
           "by_action": {meanings[a]: [0, 0] for a in reach}}  # action: [steps read, steps that changed the tile]
    for shard, r in picked:
        before, after = decoder.decode(shard.arrays["frames"][r - 1]), decoder.decode(shard.arrays["frames"][r])
        player, action = before.player, int(shard.arrays["actions"][r])
        if player is None:
            continue
        dy, dx = (0, 1 if player.facing == "right" else -1) if reach[action] == "ahead" else reach[action]
        y, x = player.row + dy, player.col + dx
        if not (0 <= y < before.tiles.shape[0] and 0 <= x < before.tiles.shape[1]):
            continue
        was, now = int(before.tiles[y, x]), int(after.tiles[y, x])
        tried = out["by_action"][meanings[action]]
        tried[0] += 1  # a press on air (mining) or on a solid tile or with empty hands (placing) changes nothing
        if action in mines and MINEABLE[was] and EMPTY[now]:
            out["mined"] += 1
            out["mined_to_sky"] += now == Tile.SKY
            tried[1] += 1
        elif action not in mines and EMPTY[was] and now in placed_tiles:
            out["placed"] += 1
            out["placed_in_sky"] += was == Tile.SKY
            tried[1] += 1
    return out


def format_summary(s: dict) -> str:
    total = max(sum(s["action_histogram"].values()), 1)
    acts = "  ".join(f"{k} {100 * v / total:.1f}%" for k, v in s["action_histogram"].items())
    rate = s["frames"] / s["collect_seconds"] if s.get("collect_seconds") else 0
    lines = [
        f"frames     {s['frames']:,} in {s['episodes']:,} episodes ({s['episodes_cut']} cut by the budget), "
        f"{s['transitions']:,} transitions",
        f"disk       {s['bytes_on_disk'] / 2 ** 20:,.1f} MiB",
        f"time       {s.get('collect_seconds', 0):.1f} s ({rate:,.0f} frames/s)",
        f"actions    {acts}",
        f"return     {s['mean_return']:.3g} mean over complete episodes" if s["mean_return"] is not None
        else "return     no complete episode",
        "agents     " + ", ".join(f"{k} {v}" for k, v in sorted(s["agents"].items())),
    ]
    c = s.get("coverage")
    if c:
        lines.append(f"wander     mean {c['mean_wander_tiles']:.0f} tiles per episode, max {c['max_wander_tiles']}")
        lines.append(f"revisits   {c['returns']:,} returns ({c['returns_per_1000_steps']:.1f} per 1,000 steps) to "
                     f"ground left at least {c['away_tiles']} tiles behind; {100 * c['revisit_fraction']:.1f}% of "
                     f"steps on such ground; gap median {c['median_return_gap']} max {c['max_return_gap']} steps, "
                     f"{c['returns_after_64_steps']} after more than 64 steps")
    ch = s.get("changes")
    if ch and ch["read"]:
        def share(k, n):
            return f"{100 * ch[k] / ch[n]:.0f}%" if ch[n] else "n/a"

        lines.append(f"changes    {ch['mined']:,} blocks mined, {share('mined_to_sky', 'mined')} of them leaving open "
                     f"sky (the rest a cave wall); {ch['placed']:,} placed, {share('placed_in_sky', 'placed')} in the "
                     f"open sky (read from {ch['read']:,} of {ch['steps']:,} mine and place steps)")
        lines.append("effect     " + "  ".join(f"{a} {100 * done / tried:.0f}% of {tried}" if tried else f"{a} n/a"
                                             for a, (tried, done) in ch["by_action"].items())
                     + " of the steps read changed the tile (a model learns an action where it did; a mine_down "
                       "that works drops the player, so its steps standing still are misses)")
    return "\n".join(lines)

