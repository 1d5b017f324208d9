"""The engine and the pycolmap baseline on the same images: one table, one JSON per set.

    .venv/bin/python bench/reconstruct.py chair                 # one set of record
    .venv/bin/python bench/reconstruct.py chair object --budget 900
    .venv/bin/python bench/reconstruct.py --list
    python bench/reconstruct.py chair --device cuda --no-baseline   # the engine on a GPU machine

Each set runs `nvs_ros.app.reconstruction.run_reconstruction` (the defaults of `nvs-ros
reconstruct`, `--init auto` included: chained features start the poses where they place at least
half of the views)
and `nvs_ros.baselines.colmap_sfm.run_colmap` on the same loaded images, writes both output
folders under bench/results/reconstruct/<set>/{nvs_ros,colmap}/ and the row to
bench/results/reconstruct/<set>.json, and prints the table. Times are wall-clock on this machine.
"""

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from nvs_ros.app.pose_start import resolve_pose_start
from nvs_ros.app.reconstruction import run_reconstruction
from nvs_ros.core.diffusion import DiffusionConfig
from nvs_ros.core.orbit_poses import OrbitConfig
from nvs_ros.core.pose_encoder import PoseEncoderConfig
from nvs_ros.io.capture_type import choose_mode
from nvs_ros.io.datasets import load_image_set
from nvs_ros.io.evaluation import score_estimates
from nvs_ros.io.output_folder import write_json, write_output_folder

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("NVS_ROS_DATA", ROOT / "../shared/data"))
RESULTS = ROOT / "bench" / "results" / "reconstruct"

# name: (source, max side, views) -- the sets of record (360-degree captures, and fern).
SETS = {
    "chair": (DATA / "nerf_synthetic_chair", 64, 100),
    "object": ("bundled:object", 128, 24),
    "room": ("bundled", 128, 24),
    "temple": (DATA / "middlebury_temple_ring", 128, 16),
    "fern": (DATA / "llff_fern", 64, 20),  # forward-facing: `choose_mode` picks the forward mode
    # robust posing (issue 4): sparse rings where pycolmap registers (almost) nothing, and the
    # dense textured captures where it works, at sizes features can use (fine levels stay small)
    "temple-8": (DATA / "middlebury_temple_ring", 320, 8),
    "chair-8": (DATA / "nerf_synthetic_chair", 400, 8),
    "chair-16": (DATA / "nerf_synthetic_chair", 400, 16),
    "fern-252": (DATA / "llff_fern", 252, 20),
    "dtu": (DATA / "dtu_scan65", 400, 49),
}
# name: (set, what changes, how) -- the paper's two ablations on chair, and every set with its poses
# learnt from the images alone (--init none; the sets run with reconstruct's default, --init auto,
# which starts from chained features where they place at least half of the views).
LEARNT = {"init": "none"}
VARIANTS = {
    "chair-K1": ("chair", "K=1 single-pose encoder, poses learnt",
                 {**LEARNT, "encoder": PoseEncoderConfig(orbit=OrbitConfig(num_azimuths=1,
                                                                          ring_elevations_deg=(30.0,)))}),
    "chair-reference": ("chair", "poses learnt, the ablations' reference at their budget", LEARNT),
    "chair-autoencoder": ("chair", "no diffusion noise (plain autoencoder), poses learnt",
                          {**LEARNT, "diffusion": DiffusionConfig(noise="none")}),
    "chair-one-start": ("chair", "one start of pose learning (no race of starts), poses learnt",
                        {**LEARNT, "starts": 1}),
    **{f"{name}-learnt": (name, "poses learnt from the images alone (--init none)", LEARNT)
       for name in ("room", "object", "temple", "fern", "temple-8", "chair-8", "chair-16", "fern-252", "dtu")},
}
COLUMNS = ["registered", "RRA@5", "RRA@15", "CCA@0.1", "ATE", "median_relative_rotation_error_deg", "heldout_PSNR",
           "heldout_SSIM", "time_s"]
HEADERS = {"median_relative_rotation_error_deg": "rel. rot. (deg)"}


def run_set(name: str, budget_s: float, seed: int, device: str = "cpu", baseline: bool = True) -> list[dict]:
    base, variant, changes = VARIANTS.get(name, (name, None, {}))
    source, size, views = SETS[base]
    image_set = load_image_set(source, max_side=size, views=views)
    started = time.perf_counter()
    init = changes.get("init", "auto")
    start = resolve_pose_start(init, source, image_set, views=views)
    started_from = start.start.value
    changed = {k: v for k, v in changes.items() if k != "init"}
    budget = {"time_budget_s": budget_s, "seed": seed, "device": device}
    mode = choose_mode(image_set)
    metrics = run_reconstruction(image_set, RESULTS / name / "nvs_ros", start.trainer_config(mode, **budget, **changed),
                                 run_info={"bench": name, "variant": variant, "init": init,
                                           "initial_poses": started_from},
                                 initial_c2w_N44=start.c2w_N44, prior_source=start.prior_source,
                                 learn_instead=start.learnt_alternative(mode, **budget, **changed)).metrics
    rows = [{"set": name, "method": "nvs_ros" + (f" ({variant})" if variant else
                                                 f" (initial poses: {started_from})"), **metrics,
             "time_s": time.perf_counter() - started}]
    if baseline and not variant:  # a variant's baseline row is its base set's
        rows.append(_colmap_row(name, image_set, size, views, seed))
    return _finish(name, image_set, rows, budget_s, device)


def _colmap_row(name: str, image_set, size: int, views: int, seed: int) -> dict:
    # Imported here so that the engine's rows can be measured where pycolmap is not installed.
    from nvs_ros.baselines.colmap_sfm import ColmapConfig, run_colmap

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_colmap_") as work:
        config = ColmapConfig(max_side=size, views=views, seed=seed)
        result = run_colmap(image_set.without_ground_truth(), config, Path(work))
    colmap_metrics = score_estimates(result.estimates, image_set)
    write_output_folder(RESULTS / name / "colmap", result.estimates, {**result.run_info, "bench": name},
                        colmap_metrics)
    return {"set": name, "method": "pycolmap", **colmap_metrics, "time_s": time.perf_counter() - started}


def _finish(name: str, image_set, rows: list[dict], budget_s: float, device: str) -> list[dict]:
    machine = f"{platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"
    if device.startswith("cuda"):
        machine += f", {torch.cuda.get_device_name(device)}"
    for row in rows:
        row.update({"views": len(image_set), "size": f"{image_set.width}x{image_set.height}",
                    "budget_s": budget_s, "date": date.today().isoformat(), "machine": machine})
    write_json(RESULTS / f"{name}.json", rows)
    return rows


def print_table(rows: list[dict]) -> None:
    table = Table(title="Engine vs pycolmap on the same images")
    for column in ["set", "views", "size", "method", *COLUMNS]:
        table.add_column(HEADERS.get(column, column), justify="right")
    for row in rows:
        cells = []
        for key in COLUMNS:
            value = row.get(key)
            cells.append("-" if value is None else f"{value:.0%}" if key.startswith(("RRA", "CCA"))
                         else f"{value:.4g}")
        table.add_row(row["set"], str(row["views"]), row["size"], row["method"], *cells)
    Console(width=140).print(table)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sets", nargs="*", default=["chair"], help=f"any of {', '.join([*SETS, *VARIANTS])}")
    parser.add_argument("--budget", type=float, default=900.0, help="engine training budget per set, s")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="torch device of the engine (cpu, cuda, cuda:1, ...)")
    parser.add_argument("--no-baseline", action="store_true", help="skip pycolmap (e.g. on a GPU machine without it)")
    parser.add_argument("--list", action="store_true", help="list the sets and exit")
    args = parser.parse_args()
    if args.list:
        for name, (source, size, views) in SETS.items():
            print(f"{name}: {source}, {views} views, max side {size}")
        return 0
    unknown = [s for s in args.sets if s not in SETS and s not in VARIANTS]
    if unknown:
        parser.error(f"unknown set(s) {unknown}; choose from {list(SETS) + list(VARIANTS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [row for name in args.sets
            for row in run_set(name, args.budget, args.seed, args.device, not args.no_baseline)]
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
