"""Pose accuracy of the live scene, what nvs_node runs, on a capture fed as a stream.

    .venv/bin/python bench/live_scene.py room object --round-budget 60 --threads 1

The views go to `core.live_scene.LiveScene` in capture order, one keyframe per training slice
(as the node's worker trains between arrivals), with the node's defaults (first round at 8
keyframes, a new full round when they have grown by half); then slices continue until every
keyframe had its chance to be registered. Each set runs twice: `auto` (a round starts from the
keyframes' chained SIFT features where they place half of them, the node's default
`initial_poses`) and `none` (poses learnt from the images). The posed keyframes are scored
against ground truth; each row goes to bench/results/live_scene/<set>-<initial poses>.json,
all to one table.
"""

import argparse
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from nvs_ros.baselines.feature_chaining import chained_keyframe_poses
from nvs_ros.core.live_scene import LiveScene
from nvs_ros.core.live_scene_config import LiveSceneConfig
from nvs_ros.core.metrics import evaluate_poses
from nvs_ros.io.datasets import load_image_set
from nvs_ros.io.output_folder import write_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "live_scene"
# name: (source, max side = the node's working_max_side, views in capture order)
SETS = {"room": ("bundled", 128, 24), "object": ("bundled:object", 128, 24)}
FINAL_SLICES = 10
"""Slices after the last keyframe: registrations of the keyframes still waiting."""
COLUMNS = ["pose_start", "posed", "RRA@5", "RRA@15", "CCA@0.1", "median_rotation_error_deg", "rounds", "time_s"]


def run(name: str, initial_poses: str, round_budget_s: float, slice_s: float, seed: int) -> dict:
    source, size, count = SETS[name]
    views = load_image_set(source, max_side=size, views=count)
    live = LiveScene(LiveSceneConfig(round_budget_s=round_budget_s, seed=seed),
                     chained_poses=chained_keyframe_poses if initial_poses == "auto" else None)
    started = time.perf_counter()
    for i in range(len(views)):
        live.add_keyframe(views.images_NHW3[i], views.K_N33[i], stamp_ns=i * 10**8, name=views.names[i])
        live.train(slice_s)
    for _ in range(FINAL_SLICES):
        status = live.train(slice_s)
    poses = live.keyframe_poses()
    index = [views.names.index(n) for n in poses.names]
    metrics = evaluate_poses(poses.c2w_N44, np.ones(len(index), bool), views.c2w_N44[index])
    return {"set": name, "initial_poses": initial_poses, "pose_start": status.pose_start,
            "posed": f"{status.posed_keyframes}/{len(views)}", **metrics, "rounds": status.rounds,
            "time_s": time.perf_counter() - started, "views": len(views), "size": f"{views.width}x{views.height}",
            "round_budget_s": round_budget_s, "date": date.today().isoformat(),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"}


def print_table(rows: list[dict]) -> None:
    table = Table(title="Live scene (nvs_node's engine) on a stream")
    for column in ["set", "initial_poses", *COLUMNS]:
        table.add_column(column, justify="right")
    for row in rows:
        cells = [f"{row[k]:.0%}" if k.startswith(("RRA", "CCA")) else f"{row[k]:.4g}" if isinstance(row[k], float)
                 else str(row[k]) for k in COLUMNS]
        table.add_row(row["set"], row["initial_poses"], *cells)
    Console(width=140).print(table)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sets", nargs="*", default=["room"], help=f"any of {', '.join(SETS)}")
    parser.add_argument("--initial-poses", nargs="+", default=["auto", "none"], choices=["auto", "none"])
    parser.add_argument("--round-budget", type=float, default=60.0, help="training time of a full round, s")
    parser.add_argument("--slice", type=float, default=1.0, help="training between keyframes, s")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for name in args.sets:
        for initial in args.initial_poses:
            rows.append(run(name, initial, args.round_budget, args.slice, args.seed))
            write_json(RESULTS / f"{name}-{initial}.json", rows[-1])
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
