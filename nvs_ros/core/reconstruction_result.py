"""What a reconstruction (core.trainer.reconstruct) gives back: the cameras, the trained engine
and how training went."""

from dataclasses import dataclass, field

import numpy as np

from nvs_ros.core.camera_estimates import CameraEstimates
from nvs_ros.core.diffusion import GenerativeLifting
from nvs_ros.core.image_set import ImageSet
from nvs_ros.core.self_check import Verdict
from nvs_ros.core.trainer_config import TrainerConfig


@dataclass
class ReconstructionResult:
    """Estimated cameras, the trained engine and how training went."""

    c2w_N44: np.ndarray
    """Camera-to-world, float64, OpenCV axes, in the field's world frame (the gauge: cameras
    around the origin at distance `radius`, +Z up; forward: near the reference camera, the
    identity, in units of its near plane)."""
    confidence_N: np.ndarray
    """Photometric fit of each image in [0, 1]: (PSNR - 10 dB) / 20 dB, clipped."""
    probability_N: np.ndarray
    """Encoder's top probability (NaN for the oracle)."""
    photometric_error_N: np.ndarray
    """Full-image MSE at the fine size, colours in [0, 1]."""
    mean_image_error_N: np.ndarray
    """The same against the mean of the images the scene was trained on (the self-check's yardstick)."""
    engine: GenerativeLifting
    radius: float
    """Camera distance of the 360 gauge (forward: the near-plane depth)."""
    curves: list[dict]
    """One dict per step: step, time (s since the start), loss, phase, lr (the field grid's,
    after the cosine decay; every other rate decays by the same factor)."""
    seed: int
    """Seed of the start that was kept."""
    start_errors: list[float]
    """Per start of the race: mean full-image MSE from the top hypotheses after the coarse stage
    (NaN for a lone start; the oracle: its training loss; given poses: none)."""
    rollbacks: int
    outlier_N: np.ndarray = None  # type: ignore[assignment]
    """Views the outlier correction took out (they do not fit the scene); none by default."""
    reposed_N: np.ndarray = None  # type: ignore[assignment]
    """Views the outlier correction moved to a better pose."""
    config: "TrainerConfig | None" = None
    """The configuration the engine was built with (what was estimated from the images, as the
    background, filled in): the one to save with the scene."""
    start_c2w: list[np.ndarray] = field(default_factory=list)
    """Per start of the race: its top hypotheses' poses (N, 4, 4) after the coarse stage."""
    kept_start: int = 0
    verdict: Verdict | None = None
    """The run's own judgement of its poses (core.self_check); views it does not support are
    among `outlier_N`."""

    def __post_init__(self) -> None:
        n = len(self.c2w_N44)
        self.outlier_N = np.zeros(n, dtype=bool) if self.outlier_N is None else self.outlier_N
        self.reposed_N = np.zeros(n, dtype=bool) if self.reposed_N is None else self.reposed_N

    def camera_estimates(self, image_set: ImageSet) -> CameraEstimates:
        n = len(image_set)
        sizes_N2 = np.tile([image_set.width, image_set.height], (n, 1))
        c2w_N44 = np.where(self.outlier_N[:, None, None], np.nan, self.c2w_N44)
        return CameraEstimates(names=list(image_set.names), c2w_N44=c2w_N44, registered_N=~self.outlier_N,
                               K_N33=image_set.K_N33, sizes_N2=sizes_N2,
                               confidence_N=np.where(self.outlier_N, 0.0, self.confidence_N))
