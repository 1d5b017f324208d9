"""One reconstruction end to end: load, estimate cameras and scene, write the output folder.

    poses.json, poses_tum.txt, run.json, metrics.json (with ground truth)   (io.output_folder)
    cloud.ply      coloured points where the field is opaque, seen from the estimated cameras
    views/         real and rendered training views side by side (<name>_real.png, _render.png)
    report.html    cameras vs ground truth after alignment, views, training curves, metrics

The estimator sees `image_set.without_ground_truth()` (the oracle `poses="gt"` excepted);
ground truth is read here only to score the result.
"""

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from nvs_ros.core.camera_estimates import CameraEstimates
from nvs_ros.core.image_set import ImageSet, evenly_spaced_indices
from nvs_ros.core.metrics import psnr, ransac_sim3
from nvs_ros.core.products import point_cloud
from nvs_ros.core.trainer import ReconstructionResult, TrainerConfig, TrainingProgress, reconstruct
from nvs_ros.io.evaluation import score_estimates
from nvs_ros.io.output_folder import software_versions, write_json, write_output_folder
from nvs_ros.io.point_cloud_ply import write_point_cloud_ply
from nvs_ros.io.report import ReportContent, write_report

_log = logging.getLogger(__name__)

REPORT_VIEWS = 8
"""Training views rendered into views/ and the report."""


def run_reconstruction(image_set: ImageSet, out_dir: Path, config: TrainerConfig,
                       progress: Callable[[TrainingProgress], None] | None = None,
                       run_info: dict | None = None) -> dict | None:
    """Reconstruct `image_set`, write every product to `out_dir`; returns the metrics (or None)."""
    out_dir = Path(out_dir)
    started = time.perf_counter()
    estimator_input = image_set if config.poses == "gt" else image_set.without_ground_truth()
    result = reconstruct(estimator_input, config, progress)
    train_s = time.perf_counter() - started
    estimates = result.camera_estimates(image_set)
    metrics = score_estimates(estimates, image_set) if image_set.has_ground_truth else None
    info = {"estimator": "nvs_ros generative lifting" + (" (oracle: ground-truth poses)" if config.poses == "gt" else ""),
            "config": dataclasses.asdict(config), "seed": config.seed, "kept_seed": result.seed,
            "restart_losses": result.restart_losses, "rollbacks": result.rollbacks,
            "dataset": image_set.source, "num_views": len(image_set),
            "image_size": [image_set.width, image_set.height], **(run_info or {})}
    info["timings"] = {"train_s": train_s}
    write_output_folder(out_dir, estimates, info, metrics)  # poses first: they are the main product

    products_started = time.perf_counter()
    write_cloud(out_dir / "cloud.ply", result, estimates, image_set)
    view_pairs = write_views(out_dir / "views", result, estimates, image_set)
    write_report(out_dir / "report.html", report_content(image_set, estimates, result, metrics, view_pairs))
    info["timings"]["products_s"] = time.perf_counter() - products_started
    info["timings"]["total_s"] = time.perf_counter() - started
    write_json(out_dir / "run.json", {"versions": software_versions(), **info})
    return metrics


def _working_views(estimates: CameraEstimates, image_set: ImageSet, max_side: int
                   ) -> tuple[ImageSet, torch.Tensor, torch.Tensor]:
    """The set at `max_side` with its intrinsics and the estimated poses as float tensors."""
    small = image_set.resized(max_side)
    return small, torch.from_numpy(small.K_N33).float(), torch.from_numpy(estimates.c2w_N44).float()


def write_cloud(path: Path, result: ReconstructionResult, estimates: CameraEstimates, image_set: ImageSet) -> int:
    """cloud.ply from the estimated cameras (at most 32 of them, evenly spread); returns the point count."""
    small, K_N33, c2w_N44 = _working_views(estimates, image_set, 64)
    pick = evenly_spaced_indices(len(image_set), 32)
    cloud = point_cloud(result.engine.field, K_N33[pick], c2w_N44[pick], small.height, small.width)
    write_point_cloud_ply(path, cloud.points_P3.cpu().numpy(), cloud.colors_P3.cpu().numpy())
    _log.info("cloud.ply: %d points", len(cloud))
    return len(cloud)


def write_views(folder: Path, result: ReconstructionResult, estimates: CameraEstimates,
                image_set: ImageSet) -> list[tuple[str, np.ndarray, np.ndarray, float]]:
    """Real and rendered training views (evenly spread), as PNGs; returns them with their PSNR."""
    small, K_N33, c2w_N44 = _working_views(estimates, image_set, 128)
    folder.mkdir(parents=True, exist_ok=True)
    pairs = []
    for i in evenly_spaced_indices(len(image_set), REPORT_VIEWS):
        rendered = result.engine.render_view(K_N33[i], c2w_N44[i], small.height, small.width)
        rendered_HW3 = (rendered.clamp(0, 1) * 255).round().byte().cpu().numpy()
        real_HW3 = small.images_NHW3[i]
        stem = Path(image_set.names[i]).stem
        for suffix, image in [("real", real_HW3), ("render", rendered_HW3)]:
            cv2.imwrite(str(folder / f"{stem}_{suffix}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        pairs.append((image_set.names[i], real_HW3, rendered_HW3, psnr(rendered_HW3, real_HW3)))
    return pairs


def report_content(image_set: ImageSet, estimates: CameraEstimates, result: ReconstructionResult,
                   metrics: dict | None, view_pairs: list) -> ReportContent:
    centres_N3 = estimates.c2w_N44[:, :3, 3]
    camera_sets = {"estimate": centres_N3}
    if image_set.has_ground_truth:
        gt_N3 = image_set.c2w_N44[:, :3, 3]
        scale = np.linalg.norm(gt_N3 - gt_N3.mean(axis=0), axis=1).max()
        sim3, _ = ransac_sim3(centres_N3, gt_N3, threshold=0.1 * scale)
        camera_sets = {"ground truth": gt_N3, "estimate (aligned)": sim3.apply_points(centres_N3)}
    curves = {"training loss": [(c["step"], c["loss"]) for c in result.curves if np.isfinite(c["loss"])]}
    notes = [f"{len(image_set)} views at {image_set.width}x{image_set.height} from {image_set.source}; "
             f"kept seed {result.seed}, rollbacks {result.rollbacks}."]
    return ReportContent(title="nvs_ros reconstruction", metrics=metrics, camera_sets=camera_sets,
                         view_pairs=view_pairs, curves=curves, notes=notes)
