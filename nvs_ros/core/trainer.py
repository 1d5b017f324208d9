"""Per-scene optimisation of Generative Lifting on unposed images (360 or forward-facing captures):
the public entry. `reconstruct` checks its inputs, sets aside views that look like none of the
others, takes the background from the images, runs the phases (core.training_phases) and has
the result judged by the run's self-check (core.self_check).
"""

import logging
from dataclasses import replace
from typing import Callable

import numpy as np

from nvs_ros.core.appearance import views_set_apart
from nvs_ros.core.image_set import ImageSet, plain_border_level
from nvs_ros.core.reconstruction_result import ReconstructionResult
from nvs_ros.core.self_check import judge
from nvs_ros.core.trainer_config import TrainerConfig
from nvs_ros.core.training_phases import TrainingPhases
from nvs_ros.core.training_run import TrainingProgress

_log = logging.getLogger(__name__)


def reconstruct(image_set: ImageSet, config: TrainerConfig = TrainerConfig(),
                progress_callback: Callable[[TrainingProgress], None] | None = None,
                initial_c2w_N44: np.ndarray | None = None) -> ReconstructionResult:
    """Cameras and a radiance field from the images of a 360 or forward capture (intrinsics given).

    Only `config.poses == "gt"` reads `image_set.c2w_N44`; otherwise pass
    `image_set.without_ground_truth()`. `initial_c2w_N44` (any frame and scale, NaN rows
    unknown) replaces the pose-learning phase: the poses are moved into the mode's gauge and
    refined with the field, outlier correction included for 360 captures (`--init features|POSES`).
    """
    if config.poses == "gt" and not image_set.has_ground_truth:
        raise ValueError("poses='gt' needs an image set with ground-truth poses")
    if config.time_budget_s is None and config.iterations is None:
        raise ValueError("give a time budget, an iteration count or both")
    apart_N = _views_set_apart(image_set, config)
    config = _with_background(config, image_set, ~apart_N)
    run = TrainingPhases(image_set, config, progress_callback, apart_N)
    if config.poses == "gt":
        result = run.oracle()
    else:
        result = run.estimate() if initial_c2w_N44 is None else run.refine_from(initial_c2w_N44)
    return _judged(replace(result, config=config), given_poses=config.poses == "gt" or initial_c2w_N44 is not None)


def _judged(result: ReconstructionResult, given_poses: bool) -> ReconstructionResult:
    """The result with its self-check: the views it does not support join the outliers."""
    verdict = judge(result.photometric_error_N, result.mean_image_error_N, ~result.outlier_N, result.start_c2w,
                    result.start_errors, result.kept_start, given_poses, result.config.self_check)
    unsupported_N = ~result.outlier_N & ~verdict.supported_N
    if unsupported_N.any():
        _log.info("self-check: %d views the scene does not explain are reported unregistered", int(unsupported_N.sum()))
    (_log.info if verdict.converged else _log.warning)("self-check: %s", verdict.summary())
    return replace(result, verdict=verdict, outlier_N=result.outlier_N | unsupported_N,
                   reposed_N=result.reposed_N & ~unsupported_N)


def _views_set_apart(image_set: ImageSet, config: TrainerConfig) -> np.ndarray:
    """The views kept out of pose learning for their looks (core.appearance): only where the
    outlier correction will judge them later (360 captures, poses estimated)."""
    judged = config.outlier_correction and config.mode == "360" and config.poses == "estimate"
    apart_N = views_set_apart(image_set.images_NHW3) if judged else np.zeros(len(image_set), dtype=bool)
    if apart_N.any():
        _log.info("belonging: %d of %d views look like none of the others, out of training until they fit: %s",
                  int(apart_N.sum()), len(apart_N), ", ".join(np.asarray(image_set.names)[apart_N]))
    return apart_N


def _with_background(config: TrainerConfig, image_set: ImageSet, belonging_N: np.ndarray) -> TrainerConfig:
    images_NHW3 = image_set.images_NHW3 if belonging_N.all() else image_set.images_NHW3[belonging_N]
    level = plain_border_level(images_NHW3) if config.background_from_images else None
    if level is None or config.diffusion.background_model != "constant":
        return config
    _log.info("background: the images' plain border, grey level %.2f", level)
    return replace(config, diffusion=replace(config.diffusion, background=level))
