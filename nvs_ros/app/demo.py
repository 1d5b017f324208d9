"""The parts of `nvs-ros demo` that are not printing: the engine's configuration for the demo's
ring, the pycolmap baseline on the same images, and the ground truth written as an estimator's
output (a check of the evaluation path)."""

import tempfile
from pathlib import Path

import numpy as np

from nvs_ros.core.camera_estimates import CameraEstimates
from nvs_ros.core.image_set import ImageSet
from nvs_ros.core.orbit_poses import OrbitConfig
from nvs_ros.core.pose_encoder import PoseEncoderConfig
from nvs_ros.core.trainer_config import TrainerConfig
from nvs_ros.io.output_folder import write_output_folder


def demo_config(scene: ImageSet, iterations: int | None, time_budget_s: float | None, seed: int,
                starts: int) -> TrainerConfig:
    """The engine's configuration for the demo scene.

    The demo's cameras are one ring, so the anchors are one ring too (8 azimuths at 30 degrees
    instead of the default two rings of 8), and every step sees every view. Measured on
    bundled:object, 24 views, 128 px, 1500 steps, seed 0 (RRA@15 / CCA@0.1): reconstruct's
    defaults 0.06 / 0; one ring of 16 anchors 0.42 / 0.21; + all 24 views per step 0.70 / 0.58;
    one ring of 8 + all views 0.74 / 0.58 (2500 steps: 0.85 / 0.75). On the room the same
    settings reach 0.10 / 0. `starts` > 1 races that many starts through pose learning's coarse
    stage in the same steps (core.trainer_config.TrainerConfig.starts: measured there).
    """
    ring = PoseEncoderConfig(orbit=OrbitConfig(num_azimuths=8, ring_elevations_deg=(30.0,)))
    return TrainerConfig(time_budget_s=time_budget_s, iterations=iterations, seed=seed,
                         batch_images=len(scene), encoder=ring, starts=starts)


def ground_truth_estimates(image_set: ImageSet) -> CameraEstimates:
    """The ground truth written as if an estimator had produced it (a check of the evaluation path)."""
    n = len(image_set)
    return CameraEstimates(names=list(image_set.names), c2w_N44=image_set.c2w_N44.copy(),
                           registered_N=np.ones(n, dtype=bool), K_N33=image_set.K_N33,
                           sizes_N2=np.tile([image_set.width, image_set.height], (n, 1)))


def run_colmap_baseline(scene: ImageSet, out_dir: Path, max_side: int, views: int, seed: int,
                        run_info: dict) -> float:
    """pycolmap incremental SfM on `scene` (its ground truth hidden), written as an output folder
    to `out_dir`; returns its wall time in seconds."""
    # pycolmap is imported only where the baseline runs: reconstruct and register need no SfM, and
    # a GPU machine's Python may not have it.
    from nvs_ros.baselines.colmap_sfm import ColmapConfig, run_colmap

    with tempfile.TemporaryDirectory(prefix="nvs_ros_colmap_") as work:
        config = ColmapConfig(max_side=max_side, views=views, seed=seed)
        result = run_colmap(scene.without_ground_truth(), config, Path(work))
    write_output_folder(out_dir, result.estimates, {**result.run_info, **run_info})
    return result.timings["total_s"]
