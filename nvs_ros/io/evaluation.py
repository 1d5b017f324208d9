"""Score any output folder against a dataset's ground truth, matching images by name (or, for a
node's saved keyframes, the bag's images by stamp)."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from nvs_ros.core.camera_estimates import CameraEstimates
from nvs_ros.core.image_set import ImageSet
from nvs_ros.core.metrics import evaluate_poses
from nvs_ros.io.bags import read_bag
from nvs_ros.io.errors import OutputFolderError
from nvs_ros.io.output_folder import read_poses, write_json


def align_to_ground_truth(estimates: CameraEstimates, ground_truth: ImageSet) -> np.ndarray:
    """GT camera-to-world (N, 4, 4) in the order of `estimates.names`."""
    if not ground_truth.has_ground_truth:
        raise OutputFolderError(f"{ground_truth.source} has no ground-truth poses to evaluate against")
    index_of = {name: i for i, name in enumerate(ground_truth.names)}
    unknown = [name for name in estimates.names if name not in index_of]
    if unknown:
        raise OutputFolderError(
            f"{len(unknown)} image(s) of the output are not in {ground_truth.source}, e.g. {unknown[:3]}")
    return ground_truth.c2w_N44[[index_of[name] for name in estimates.names]]


def score_estimates(estimates: CameraEstimates, ground_truth: ImageSet) -> dict:
    """Pose metrics of `estimates` over the images they cover (unregistered ones count as failures)."""
    gt_c2w_N44 = align_to_ground_truth(estimates, ground_truth)
    return evaluate_poses(estimates.c2w_N44, estimates.registered_N, gt_c2w_N44)


def write_metrics(out_dir: Path, estimates: CameraEstimates, ground_truth: ImageSet) -> dict:
    """Score `estimates` (read from `out_dir`) into `out_dir/metrics.json`; returns the metrics.
    What else the file holds (the view-synthesis scores of a reconstruction) is kept."""
    path = Path(out_dir) / "metrics.json"
    try:
        metrics = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):  # a damaged file is replaced, not a reason to fail
        metrics = {}
    metrics.update(score_estimates(estimates, ground_truth))
    metrics["ground_truth"] = ground_truth.source
    write_json(path, metrics)
    return metrics


def evaluate_output_folder(out_dir: Path, ground_truth: ImageSet) -> dict:
    """Score `out_dir/poses.json` and write `out_dir/metrics.json`; returns the metrics."""
    return write_metrics(out_dir, read_poses(out_dir), ground_truth)


def score_against_bag(out_dir: Path, bag: Path) -> dict:
    """The poses a node saved (`~/save`: keyframes named by the node, stamped) scored against
    the ground truth of the bag it was fed, each matched to the bag image nearest its stamp."""
    frames = read_bag(bag)
    estimates = read_poses(out_dir)
    stamps_N = np.round(np.asarray(estimates.stamps_N) * 1e9).astype(np.int64)
    nearest_N = np.abs(stamps_N[:, None] - frames.stamps_ns[None]).argmin(axis=1)
    names = [frames.image_set.names[i] for i in nearest_N]
    return score_estimates(replace(estimates, names=names), frames.image_set)
