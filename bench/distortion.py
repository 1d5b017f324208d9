"""Lens distortion: `reconstruct` on the bundled room seen through a lens, undistorted as it enters
(io.camera_models) and with the lens ignored, against the same room through a pinhole camera.

    .venv/bin/python bench/distortion.py --budget 300 --threads 1
    .venv/bin/python bench/distortion.py --lenses plumb_bob --budget 120 --threads 1

Per lens (plumb_bob k1 = -0.3, the issue's target; equidistant: a 100-degree fisheye) the room's
24 ring views are rendered through the lens ray by ray (io.bundled_scene), written as a ROS 2 bag
whose CameraInfo carries the lens, and read back with `read_bag` as users read theirs
(undistorted); "ignored" writes the same distorted images with the pinhole part of the camera
only, as nvs_ros did before it had lens models. Each set runs
`nvs_ros.app.reconstruction.run_reconstruction` with `reconstruct`'s defaults (--init auto) and
the same budget and seed. Prints one table (registered, RRA@5, RRA@15, CCA@0.1, ATE, time) and
writes the rows to bench/results/distortion/<lens>.json (the output folders beside them).
"""

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from nvs_ros.app.pose_start import resolve_pose_start
from nvs_ros.app.reconstruction import run_reconstruction
from nvs_ros.io.bag_writer import write_bag
from nvs_ros.io.bags import read_bag
from nvs_ros.io.bundled_scene import FOV_DEG, render_bundled_scene
from nvs_ros.io.camera_models import CameraModel, undistorter
from nvs_ros.io.capture_type import choose_mode
from nvs_ros.io.output_folder import write_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "distortion"
SIZE, VIEWS = 128, 24
COLUMNS = ["registered", "RRA@5", "RRA@15", "CCA@0.1", "ATE", "time_s"]


def lens(name: str, size: int = SIZE) -> CameraModel:
    """The benchmark's lenses, on the bundled camera's size."""
    if name == "plumb_bob":  # the k1 = -0.3 on the bundled 55-degree camera
        focal = 0.5 * size / np.tan(np.radians(FOV_DEG) / 2.0)
        return CameraModel.create([[focal, 0, (size - 1) / 2], [0, focal, (size - 1) / 2], [0, 0, 1]],
                                  size, size, "plumb_bob", [-0.3, 0.0, 0.0, 0.0, 0.0])
    focal = 0.5 * size / np.radians(50.0)  # equidistant: 100 degrees across
    return CameraModel.create([[focal, 0, (size - 1) / 2], [0, focal, (size - 1) / 2], [0, 0, 1]],
                              size, size, "equidistant", [-0.02, 0.004, -0.001, 0.0002])


def run(name: str, source: Path | str, budget_s: float, seed: int, out: Path) -> dict:
    image_set = (render_bundled_scene("room", "ring", VIEWS, SIZE) if source == "bundled"
                 else read_bag(source).image_set)
    started = time.perf_counter()
    start = resolve_pose_start("auto", source, image_set, views=VIEWS)
    mode = choose_mode(image_set)
    budget = {"time_budget_s": budget_s, "seed": seed, "device": "cpu"}
    metrics = run_reconstruction(image_set, out, start.trainer_config(mode, **budget),
                                 run_info={"bench": "distortion", "set": name, "initial_poses": start.start.value},
                                 initial_c2w_N44=start.c2w_N44, prior_source=start.prior_source,
                                 learn_instead=start.learnt_alternative(mode, **budget)).metrics
    return {"set": name, "initial_poses": start.start.value, **metrics, "time_s": time.perf_counter() - started}


def run_lens(lens_name: str, budget_s: float, seed: int) -> list[dict]:
    camera = lens(lens_name)
    folder = RESULTS / lens_name
    distorted = render_bundled_scene("room", "ring", VIEWS, camera=camera)
    ignored = CameraModel.create(camera.K_33, camera.width, camera.height)  # the lens dropped
    with tempfile.TemporaryDirectory(prefix="nvs_distortion_") as work:  # bags are inputs, not results
        write_bag(distorted, Path(work) / "lens", camera=camera)
        write_bag(distorted, Path(work) / "ignored", camera=ignored)
        rows = [run("pinhole (reference)", "bundled", budget_s, seed, folder / "pinhole"),
                run(f"{lens_name}, undistorted", Path(work) / "lens", budget_s, seed, folder / "undistorted"),
                run(f"{lens_name}, ignored", Path(work) / "ignored", budget_s, seed, folder / "ignored")]
    machine = f"{platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"
    for row in rows:
        row.update({"lens": camera.describe(), "undistorted_K": undistorter(camera).K_33.tolist(),
                    "views": VIEWS, "size": f"{SIZE}x{SIZE}", "budget_s": budget_s, "seed": seed,
                    "date": date.today().isoformat(), "machine": machine})
    write_json(RESULTS / f"{lens_name}.json", rows)
    return rows


def print_table(rows: list[dict]) -> None:
    table = Table(title="reconstruct on the bundled room through a lens")
    for column in ["set", *COLUMNS]:
        table.add_column(column, justify="right")
    for row in rows:
        cells = ["-" if row.get(k) is None else f"{row[k]:.0%}" if k.startswith(("RRA", "CCA")) else f"{row[k]:.4g}"
                 for k in COLUMNS]
        table.add_row(row["set"], *cells)
    Console(width=140).print(table)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lenses", nargs="*", default=["plumb_bob", "equidistant"],
                        choices=["plumb_bob", "equidistant"])
    parser.add_argument("--budget", type=float, default=300.0, help="training budget per run, s")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [row for name in args.lenses for row in run_lens(name, args.budget, args.seed)]
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
