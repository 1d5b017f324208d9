"""Pinhole intrinsics.

Pixel convention (OpenCV): the centre of the top-left pixel is (0, 0), so a pixel
(u, v) covers [u - 0.5, u + 0.5]. Scaling an image by s maps u to (u + 0.5) * s - 0.5.
"""

import numpy as np


def intrinsics_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """3x3 float64 pinhole matrix."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def scale_intrinsics(K_N33: np.ndarray, scale_x: float, scale_y: float) -> np.ndarray:
    """Intrinsics of the same cameras after resizing the images by (scale_x, scale_y)."""
    K_N33 = np.array(K_N33, dtype=np.float64, copy=True)
    K_N33[..., 0, 0] *= scale_x
    K_N33[..., 1, 1] *= scale_y
    K_N33[..., 0, 2] = (K_N33[..., 0, 2] + 0.5) * scale_x - 0.5
    K_N33[..., 1, 2] = (K_N33[..., 1, 2] + 0.5) * scale_y - 0.5
    return K_N33


def fit_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(height, width) scaled down so the longer side is at most max_side (never up)."""
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))
