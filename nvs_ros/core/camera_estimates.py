"""What every pose estimator returns (the engine, the pycolmap baseline, the ROS node)."""

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class CameraEstimates:
    """Estimated cameras for a list of images, unregistered ones included."""

    names: list[str]
    c2w_N44: np.ndarray
    """Camera-to-world, OpenCV camera axes; rows of unregistered images are NaN."""
    registered_N: np.ndarray
    """True where the estimator produced a pose."""
    K_N33: np.ndarray
    """Intrinsics the poses were estimated with, at `sizes_N2` resolution."""
    sizes_N2: np.ndarray
    """(width, height) of each image in pixels."""
    confidence_N: np.ndarray = field(default=None)  # type: ignore[assignment]
    """In [0, 1]; 1 for every registered image when the estimator has no notion of it."""
    stamps_N: np.ndarray | None = None
    """Capture times in seconds (bags); None for image sets, where the index stands in."""
    scale_source: str | None = None
    """What fixed the metric scale (e.g. 'odometry'), or None: poses are up to a similarity."""

    def __post_init__(self) -> None:
        n = len(self.names)
        registered = np.asarray(self.registered_N, dtype=bool)
        object.__setattr__(self, "registered_N", registered)
        if self.confidence_N is None:
            object.__setattr__(self, "confidence_N", registered.astype(np.float64))
        shapes = {"c2w": (self.c2w_N44.shape, (n, 4, 4)), "registered": (registered.shape, (n,)),
                  "K": (self.K_N33.shape, (n, 3, 3)), "sizes": (np.shape(self.sizes_N2), (n, 2)),
                  "confidence": (np.shape(self.confidence_N), (n,))}
        for name, (got, want) in shapes.items():
            if got != want:
                raise ValueError(f"{name} must have shape {want}, got {got}")
        if not np.isfinite(self.c2w_N44[registered]).all():
            raise ValueError("a registered camera has a non-finite pose")

    def __len__(self) -> int:
        return len(self.names)
