"""Robust posing (issue 4): foreign images mixed into a capture, and flipped initial poses.

    .venv/bin/python bench/robust.py outliers flipped --budget 300 --threads 1 --seed 0

outliers: nerf_synthetic_chair, 60 evenly spaced views at 64 px, with 5 middlebury_temple_ring
    images (centre-cropped to the chair's aspect, resized to its size, intrinsics adjusted,
    named foreign_temple_XX) inserted at spread positions. `nvs_ros.core.trainer.reconstruct`
    (the defaults: `config_for_mode("360", ...)`) runs on the mixed set and on the clean 60 views
    at the same budget. It is called directly, not through `run_reconstruction`, so that every
    image is trained on: the question is whether the trainer's outlier correction flags the
    foreign images (`outlier_N`), and the pipeline's every-8th hold-out would send some of them
    to frame registration instead (benched by bench/registration.py) and take different chair
    views out of the two runs. Foreign images have no ground truth: only the 60 chair images are
    scored (a chair image flagged as an outlier counts as unregistered).
    Target: all 5 flagged, chair RRA@15 within 3 points of the clean run.
outliers-auto: the same mixed and clean sets through `nvs-ros reconstruct`'s defaults
    (`run_reconstruction` started as `--init auto` starts it: features chained on the views at 640
    px, the temple images fitted to that size too). Foreign images count as flagged when the
    output leaves them unregistered: the chain did not place them and their registration into
    the finished scene was rejected. Held-out views (every 8th) are registered, as in any run.
flipped: nerf_synthetic_chair, 100 views at 64 px, through `run_reconstruction` (the pipeline of
    `nvs-ros reconstruct`, held-out registration included) started from initial poses read from
    a poses file the way `--init PATH` reads it (`nvs_ros.app.pose_start.initial_poses`). The file holds the
    ground truth with noise (3 degrees about a random axis, 3% of the ring radius in a random
    direction), and 20% of the training views (the held-out ones are registered into the
    finished scene with their initial pose as a prior, since 2026-12-03), drawn with the seed,
    turned 180 degrees about the world up axis through the scene centre (the SparseAGS ambiguity;
    NeRF synthetic is Z-up around the origin: c2w' = Rz(180) @ c2w).
    A view counts as corrected when its rotation error is <= 15 degrees after aligning the
    registered training cameras to ground truth with a robust Sim(3). Target: >= 90% corrected.
    The row "initial poses" scores the file itself.

Rows go to bench/results/robust/<scenario>.json (with date and machine), the output folders
under bench/results/robust/<scenario>/. Times are wall-clock on this machine.
"""

import argparse
import dataclasses
import json
import logging
import math
import os
import platform
import sys
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from nvs_ros.app.pose_start import AUTO, initial_poses
from nvs_ros.app.reconstruction import HOLD_OUT_EVERY, held_out_mask, run_reconstruction
from nvs_ros.core.camera_estimates import CameraEstimates
from nvs_ros.core.cameras import scale_intrinsics
from nvs_ros.core.image_set import ImageSet, resize_images
from nvs_ros.core.metrics import evaluate_poses, rotation_angle_deg
from nvs_ros.core.sim3 import ransac_sim3
from nvs_ros.core.reconstruction_result import ReconstructionResult
from nvs_ros.core.trainer import reconstruct
from nvs_ros.core.trainer_config import config_for_mode
from nvs_ros.io.datasets import load_for_features, load_image_set
from nvs_ros.io.output_folder import write_json, write_output_folder

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("NVS_ROS_DATA", ROOT / "../shared/data"))
RESULTS = ROOT / "bench" / "results" / "robust"
CHAIR = DATA / "nerf_synthetic_chair"
TEMPLE = DATA / "middlebury_temple_ring"
SIZE = 64
OUTLIER_CHAIR_VIEWS = 60
FOREIGN_VIEWS = 5
FLIPPED_VIEWS = 100
FLIPPED_FRACTION = 0.2
NOISE_ROTATION_DEG = 3.0
NOISE_POSITION_FRACTION = 0.03
"""Of the ring radius (mean distance of the ground-truth centres from the origin)."""
CORRECT_DEG = 15.0


# ----------------------------------------------------------------------------- pure helpers

def fit_to_size(image_set: ImageSet, width: int, height: int) -> ImageSet:
    """Views centre-cropped to the aspect of width x height, then resized to it; intrinsics follow
    (the crop shifts the principal point, the resize scales it). Masks are dropped."""
    aspect = width / height
    crop_w = min(image_set.width, round(image_set.height * aspect))
    crop_h = min(image_set.height, round(image_set.width / aspect))
    x0, y0 = (image_set.width - crop_w) // 2, (image_set.height - crop_h) // 2
    cropped_NHW3 = image_set.images_NHW3[:, y0:y0 + crop_h, x0:x0 + crop_w]
    K_N33 = np.array(image_set.K_N33, dtype=np.float64, copy=True)
    K_N33[:, 0, 2] -= x0
    K_N33[:, 1, 2] -= y0
    return replace(image_set, images_NHW3=resize_images(cropped_NHW3, height, width),
                   K_N33=scale_intrinsics(K_N33, width / crop_w, height / crop_h), masks_NHW=None)


def spread_positions(base_count: int, insert_count: int) -> np.ndarray:
    """Where `insert_count` foreign views land in the mixed sequence: in the middle of equal
    stretches of the `base_count` base views (6, 19, 32, 45, 58 for 60 and 5)."""
    k = np.arange(insert_count)
    return np.floor((k + 0.5) * base_count / insert_count).astype(int) + k


def mix_in(base: ImageSet, foreign: ImageSet, prefix: str) -> tuple[ImageSet, np.ndarray]:
    """`foreign` inserted into `base` at spread positions, renamed `<prefix>_XX`; returns the
    mixed set (no ground truth, no masks) and the mask of the foreign views in it."""
    positions = spread_positions(len(base), len(foreign))
    foreign_N = np.zeros(len(base) + len(foreign), dtype=bool)
    foreign_N[positions] = True
    order = np.empty(len(foreign_N), dtype=int)
    order[~foreign_N] = np.arange(len(base))
    order[foreign_N] = len(base) + np.arange(len(foreign))
    names = [*base.names, *(f"{prefix}_{k:02d}" for k in range(len(foreign)))]
    images_NHW3 = np.concatenate([base.images_NHW3, foreign.images_NHW3])
    K_N33 = np.concatenate([base.K_N33, foreign.K_N33])
    mixed = ImageSet(names=[names[i] for i in order], images_NHW3=images_NHW3[order], K_N33=K_N33[order],
                     capture=base.capture, source=f"{base.source} + {len(foreign)} of {foreign.source}")
    return mixed, foreign_N


def perturb_poses(c2w_N44: np.ndarray, rotation_deg: float, offset: float, rng: np.random.Generator) -> np.ndarray:
    """Each camera turned by `rotation_deg` about a random axis (through its centre) and moved by
    `offset` in a random direction."""
    out_N44 = np.array(c2w_N44, dtype=np.float64, copy=True)
    for c2w in out_N44:
        c2w[:3, :3] = _axis_angle(_unit(rng.normal(size=3)), math.radians(rotation_deg)) @ c2w[:3, :3]
        c2w[:3, 3] += offset * _unit(rng.normal(size=3))
    return out_N44


def flip_about_up(c2w_N44: np.ndarray) -> np.ndarray:
    """Cameras turned 180 degrees about the world Z axis through the origin: Rz(180) @ c2w."""
    Rz_44 = np.diag([-1.0, -1.0, 1.0, 1.0])
    return Rz_44 @ c2w_N44


def aligned_rotation_errors(est_c2w_N44: np.ndarray, registered_N: np.ndarray, gt_c2w_N44: np.ndarray,
                            used_N: np.ndarray) -> np.ndarray:
    """Per view, degrees between the estimated rotation and the ground truth after a robust
    Sim(3) of the registered `used_N` centres onto the ground truth (threshold: 0.1 x the scene
    scale, as `evaluate_poses`); NaN where unregistered."""
    fit_N = registered_N & used_N
    gt_N3 = gt_c2w_N44[:, :3, 3]
    scene_scale = np.linalg.norm(gt_N3 - gt_N3.mean(axis=0), axis=1).max()
    sim3, _ = ransac_sim3(est_c2w_N44[fit_N, :3, 3], gt_N3[fit_N], threshold=0.1 * scene_scale)
    errors_N = np.full(len(est_c2w_N44), np.nan)
    aligned_M33 = sim3.R_33 @ est_c2w_N44[registered_N, :3, :3]
    errors_N[registered_N] = rotation_angle_deg(aligned_M33.transpose(0, 2, 1) @ gt_c2w_N44[registered_N, :3, :3])
    return errors_N


def _axis_angle(axis_3: np.ndarray, angle: float) -> np.ndarray:
    K = np.array([[0, -axis_3[2], axis_3[1]], [axis_3[2], 0, -axis_3[0]], [-axis_3[1], axis_3[0], 0]])
    return np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K


def _unit(v_3: np.ndarray) -> np.ndarray:
    return v_3 / np.linalg.norm(v_3)


# ----------------------------------------------------------------------------- scenarios

OUTLIER_RUNS = ("mixed", "clean")


def run_outliers(budget_s: float, seed: int, runs: tuple[str, ...] = OUTLIER_RUNS) -> list[dict]:
    chair = load_image_set(CHAIR, max_side=SIZE, views=OUTLIER_CHAIR_VIEWS)
    temple = fit_to_size(load_image_set(TEMPLE, views=FOREIGN_VIEWS), chair.width, chair.height)
    mixed, foreign_N = mix_in(chair.without_ground_truth(), temple, "foreign_temple")
    config = config_for_mode("360", time_budget_s=budget_s, seed=seed)
    rows = []
    sets = {"mixed": (mixed, foreign_N), "clean": (chair.without_ground_truth(), np.zeros(len(chair), bool))}
    for run in runs:
        image_set, is_foreign_N = sets[run]
        started = time.perf_counter()
        result = reconstruct(image_set, config)
        seconds = time.perf_counter() - started
        estimates = result.camera_estimates(image_set)
        write_output_folder(RESULTS / "outliers" / run, estimates,
                            {"bench": "robust outliers", "run": run, "config": dataclasses.asdict(config),
                             "foreign": [n for n, f in zip(image_set.names, is_foreign_N) if f]})
        chair_i = np.flatnonzero(~is_foreign_N)
        metrics = evaluate_poses(estimates.c2w_N44[chair_i], estimates.registered_N[chair_i], chair.c2w_N44)
        rows.append({"scenario": "outliers", "run": run, "seed": seed, "views": len(image_set),
                     "foreign_flagged": int(result.outlier_N[is_foreign_N].sum()) if is_foreign_N.any() else None,
                     "foreign": int(is_foreign_N.sum()),
                     "chair_flagged": int(result.outlier_N[chair_i].sum()),
                     "reposed": int(result.reposed_N.sum()),
                     "reposed_foreign": int(result.reposed_N[is_foreign_N].sum()),
                     "flagged_names": [image_set.names[i] for i in np.flatnonzero(result.outlier_N)],
                     "photometric_error_foreign": result.photometric_error_N[is_foreign_N].tolist(),
                     "photometric_error_chair_median": float(np.median(result.photometric_error_N[chair_i])),
                     **metrics, "time_s": seconds})
        print(f"outliers {run}: {rows[-1]['flagged_names']} flagged, RRA@15 {metrics['RRA@15']:.3f}", flush=True)
    return _finish("outliers", rows, budget_s, f"{chair.width}x{chair.height}")


def run_outliers_auto(budget_s: float, seed: int, runs: tuple[str, ...] = OUTLIER_RUNS) -> list[dict]:
    chair = load_image_set(CHAIR, max_side=SIZE, views=OUTLIER_CHAIR_VIEWS)
    chair_large = load_for_features(CHAIR, chair, views=OUTLIER_CHAIR_VIEWS)
    temple = load_image_set(TEMPLE, views=FOREIGN_VIEWS)
    mixed, foreign_N = mix_in(chair.without_ground_truth(), fit_to_size(temple, chair.width, chair.height),
                              "foreign_temple")
    mixed_large, _ = mix_in(chair_large.without_ground_truth(),
                            fit_to_size(temple, chair_large.width, chair_large.height), "foreign_temple")
    sets = {"mixed": (mixed, mixed_large, foreign_N),
            "clean": (chair.without_ground_truth(), chair_large.without_ground_truth(), np.zeros(len(chair), bool))}
    rows = []
    for run in runs:
        image_set, feature_set, is_foreign_N = sets[run]
        started = time.perf_counter()
        start = initial_poses(AUTO, image_set, feature_set)
        initial_N44, started_from = start.c2w_N44, start.start.value
        config = start.trainer_config("360", time_budget_s=budget_s, seed=seed)
        out_dir = RESULTS / "outliers-auto" / run
        estimates = run_reconstruction(image_set, out_dir, config, initial_c2w_N44=initial_N44,
                                       run_info={"bench": "robust outliers-auto", "run": run,
                                                 "initial_poses": started_from}).estimates
        seconds = time.perf_counter() - started
        chair_i = np.flatnonzero(~is_foreign_N)
        metrics = evaluate_poses(estimates.c2w_N44[chair_i], estimates.registered_N[chair_i], chair.c2w_N44)
        unregistered_N = ~estimates.registered_N
        rows.append({"scenario": "outliers-auto", "run": run, "seed": seed, "views": len(image_set),
                     "initial_poses": started_from,
                     "chained": int(np.isfinite(initial_N44).all(axis=(1, 2)).sum()) if initial_N44 is not None else 0,
                     "foreign_flagged": int(unregistered_N[is_foreign_N].sum()) if is_foreign_N.any() else None,
                     "foreign": int(is_foreign_N.sum()), "chair_flagged": int(unregistered_N[chair_i].sum()),
                     "flagged_names": [image_set.names[i] for i in np.flatnonzero(unregistered_N)],
                     **metrics, "time_s": seconds})
        print(f"outliers-auto {run}: {rows[-1]['flagged_names']} unregistered, RRA@15 {metrics['RRA@15']:.3f}",
              flush=True)
    return _finish("outliers-auto", rows, budget_s, f"{chair.width}x{chair.height}")


def run_flipped(budget_s: float, seed: int) -> list[dict]:
    chair = load_image_set(CHAIR, max_side=SIZE, views=FLIPPED_VIEWS)
    gt_N44 = chair.c2w_N44
    training_N = ~held_out_mask(len(chair), HOLD_OUT_EVERY)
    rng = np.random.default_rng(seed)
    training = np.flatnonzero(training_N)
    flipped = np.sort(rng.choice(training, round(FLIPPED_FRACTION * len(training)), replace=False))
    flipped_N = np.zeros(len(chair), dtype=bool)
    flipped_N[flipped] = True
    ring_radius = float(np.linalg.norm(gt_N44[:, :3, 3], axis=1).mean())
    initial_N44 = perturb_poses(gt_N44, NOISE_ROTATION_DEG, NOISE_POSITION_FRACTION * ring_radius, rng)
    initial_N44[flipped_N] = flip_about_up(initial_N44[flipped_N])
    initial_dir = RESULTS / "flipped" / "initial"
    write_output_folder(initial_dir, _estimates(chair, initial_N44),
                        {"bench": "robust flipped", "flipped": [chair.names[i] for i in flipped],
                         "noise": {"rotation_deg": NOISE_ROTATION_DEG,
                                   "position": NOISE_POSITION_FRACTION * ring_radius}})
    read_back_N44 = initial_poses(str(initial_dir), chair).c2w_N44  # as `nvs-ros reconstruct --init PATH`

    rows = [_flipped_row("initial poses", _estimates(chair, read_back_N44), gt_N44, training_N, flipped_N, None, 0.0)]
    out_dir = RESULTS / "flipped" / "nvs_ros"
    config = config_for_mode("360", time_budget_s=budget_s, seed=seed)
    started = time.perf_counter()
    reconstruction = run_reconstruction(chair, out_dir, config, run_info={"bench": "robust flipped"},
                                        initial_c2w_N44=read_back_N44)
    rows.append(_flipped_row("nvs_ros", reconstruction.estimates, gt_N44, training_N, flipped_N,
                             reconstruction.training, time.perf_counter() - started))
    return _finish("flipped", rows, budget_s, f"{chair.width}x{chair.height}")


def _flipped_row(run: str, estimates: CameraEstimates, gt_N44: np.ndarray, training_N: np.ndarray,
                 flipped_N: np.ndarray, result: ReconstructionResult | None, seconds: float) -> dict:
    errors_N = aligned_rotation_errors(estimates.c2w_N44, estimates.registered_N, gt_N44, training_N)
    correct_N = np.nan_to_num(errors_N, nan=np.inf) <= CORRECT_DEG
    unflipped_N = training_N & ~flipped_N
    unflipped = evaluate_poses(estimates.c2w_N44[unflipped_N], estimates.registered_N[unflipped_N], gt_N44[unflipped_N])
    row = {"scenario": "flipped", "run": run, "views": len(gt_N44), "training_views": int(training_N.sum()),
           "flipped": int(flipped_N.sum()), "flipped_corrected": int(correct_N[flipped_N].sum()),
           "unflipped": int(unflipped_N.sum()), "unflipped_correct": int(correct_N[unflipped_N].sum()),
           "still_wrong": {estimates.names[i]: _finite(errors_N[i])
                           for i in np.flatnonzero(training_N & ~correct_N)},
           **evaluate_poses(estimates.c2w_N44, estimates.registered_N, gt_N44),
           "unflipped_RRA@15": unflipped["RRA@15"], "unflipped_CCA@0.1": unflipped["CCA@0.1"],
           "unflipped_median_rotation_error_deg": unflipped["median_rotation_error_deg"], "time_s": seconds}
    if result is not None:  # the trainer saw the training views only, in order
        reposed_N = np.zeros_like(training_N)
        reposed_N[training_N] = result.reposed_N
        outlier_N = np.zeros_like(training_N)
        outlier_N[training_N] = result.outlier_N
        row.update({"reposed": int(reposed_N.sum()), "reposed_flipped": int(reposed_N[flipped_N].sum()),
                    "taken_out": int(outlier_N.sum()), "taken_out_flipped": int(outlier_N[flipped_N].sum())})
    return row


def _estimates(image_set: ImageSet, c2w_N44: np.ndarray) -> CameraEstimates:
    registered_N = np.isfinite(c2w_N44).all(axis=(1, 2))
    sizes_N2 = np.tile([image_set.width, image_set.height], (len(image_set), 1))
    return CameraEstimates(names=list(image_set.names), c2w_N44=c2w_N44, registered_N=registered_N,
                           K_N33=image_set.K_N33, sizes_N2=sizes_N2)


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _finish(name: str, rows: list[dict], budget_s: float, size: str) -> list[dict]:
    machine = f"{platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"
    for row in rows:
        row.update({"size": size, "budget_s": budget_s, "date": date.today().isoformat(), "machine": machine})
    rerun = {(row["run"], row.get("seed", 0)) for row in rows}
    kept = [row for row in _read_rows(RESULTS / f"{name}.json") if (row["run"], row.get("seed", 0)) not in rerun]
    write_json(RESULTS / f"{name}.json", kept + rows)
    return kept + rows


def _read_rows(path: Path) -> list[dict]:
    """The rows of earlier runs of the scenario (a run and seed replace only their own row)."""
    return json.loads(path.read_text()) if path.exists() else []


# ----------------------------------------------------------------------------- tables

def _cell(row: dict, key: str) -> str:
    if key in ("foreign_flagged", "flipped_corrected", "unflipped_correct"):
        total = {"foreign_flagged": "foreign", "flipped_corrected": "flipped", "unflipped_correct": "unflipped"}[key]
        return "-" if row.get(key) is None else f"{row[key]}/{row[total]}"
    value = row.get(key)
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return f"{value:.0%}" if "RRA" in key or "CCA" in key else f"{value:.4g}"


TABLES = {
    "outliers": ("Foreign images mixed in (chair 60 views + 5 temple)",
                 ["foreign_flagged", "chair_flagged", "reposed", "RRA@5", "RRA@15", "CCA@0.1",
                  "median_rotation_error_deg", "time_s"]),
    "outliers-auto": ("Foreign images mixed in, reconstruct's defaults (--init auto)",
                      ["initial_poses", "chained", "foreign_flagged", "chair_flagged", "RRA@5", "RRA@15", "CCA@0.1",
                       "median_rotation_error_deg", "time_s"]),
    "flipped": ("20% of the initial poses flipped 180 degrees (chair)",
                ["flipped_corrected", "unflipped_correct", "reposed", "taken_out", "RRA@15", "CCA@0.1",
                 "unflipped_RRA@15", "unflipped_CCA@0.1", "median_rotation_error_deg", "time_s"]),
}
HEADERS = {"median_rotation_error_deg": "med. rot. (deg)", "foreign_flagged": "foreign flagged",
           "chair_flagged": "chair flagged", "flipped_corrected": "flipped <=15 deg",
           "unflipped_correct": "unflipped <=15 deg", "unflipped_RRA@15": "unfl. RRA@15",
           "unflipped_CCA@0.1": "unfl. CCA@0.1", "taken_out": "taken out"}


def print_table(name: str, rows: list[dict]) -> None:
    title, columns = TABLES[name]
    table = Table(title=title)
    for column in ["run", "views", "size", *columns]:
        table.add_column(HEADERS.get(column, column), justify="right")
    for row in rows:
        table.add_row(row["run"], str(row["views"]), row["size"], *(_cell(row, key) for key in columns))
    Console(width=160).print(table)


SCENARIOS = {"outliers": run_outliers, "outliers-auto": run_outliers_auto, "flipped": run_flipped}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", default=list(SCENARIOS), help=f"any of {', '.join(SCENARIOS)}")
    parser.add_argument("--budget", type=float, default=300.0, help="engine training budget per run, s")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--runs", default=",".join(OUTLIER_RUNS),
                        help="outliers: which runs (comma-separated; other runs' and seeds' rows are kept)")
    parser.add_argument("--verbose", action="store_true", help="log the trainer's phases (suspects, re-posed views)")
    args = parser.parse_args()
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; choose from {list(SCENARIOS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    runs = tuple(run for run in args.runs.split(",") if run)
    if not set(runs) <= set(OUTLIER_RUNS):
        parser.error(f"--runs: choose from {list(OUTLIER_RUNS)}")
    results = {name: SCENARIOS[name](args.budget, args.seed, runs) if name.startswith("outliers")
               else SCENARIOS[name](args.budget, args.seed) for name in args.scenarios}
    for name, rows in results.items():
        print_table(name, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
