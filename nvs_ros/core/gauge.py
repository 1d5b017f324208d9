"""The gauge of given poses: moved, turned and scaled into the frame the 360 engine estimates
poses in (cameras around the origin at a fixed mean distance, world +Z up)."""

import math

import numpy as np
import torch

from nvs_ros.core.cameras import so3_exp
from nvs_ros.core.errors import InputError


def fill_unknown(c2w_N44: np.ndarray) -> np.ndarray:
    """Rows without a pose (NaN) take the nearest known one in capture order."""
    known = np.flatnonzero(np.isfinite(c2w_N44).all(axis=(1, 2)))
    if len(known) < 2:
        raise InputError(f"initial poses: {len(known)} of {len(c2w_N44)} known, need at least 2")
    nearest = known[np.abs(np.arange(len(c2w_N44))[:, None] - known[None]).argmin(axis=1)]
    return np.asarray(c2w_N44, dtype=np.float64)[nearest]


def upright(c2w_N44: np.ndarray) -> np.ndarray:
    """Poses turned so that the cameras' up is world +Z, the gauge's up (turns about +Z are how
    flipped views are re-posed): people and robots hold cameras level, and chained poses live in
    the first camera's frame (y down). Z-up poses (REP 103 odometry, ring captures) barely move."""
    up_3 = level_up(c2w_N44)
    axis_3 = np.cross(up_3, [0.0, 0.0, 1.0])
    angle = math.atan2(np.linalg.norm(axis_3), up_3[2])
    if np.linalg.norm(axis_3) < 1e-9:  # already up, or upside down: turn about x
        axis_3 = np.array([1.0, 0.0, 0.0])
    omega_3 = axis_3 / np.linalg.norm(axis_3) * angle
    R = so3_exp(torch.from_numpy(omega_3)[None])[0].numpy()
    out_N44 = np.array(c2w_N44, dtype=np.float64, copy=True)
    out_N44[:, :3, :3] = R @ c2w_N44[:, :3, :3]
    out_N44[:, :3, 3] = c2w_N44[:, :3, 3] @ R.T
    return out_N44


def level_up(c2w_N44: np.ndarray) -> np.ndarray:
    """The unit direction the cameras' x axes are most perpendicular to (level cameras: no roll),
    signed like their mean up (-y). The mean up itself tilts toward the centre on a hemisphere of
    cameras looking down at an object (4.7 degrees on NeRF's chair); when the x axes do not fix
    a direction (all parallel: a straight drive), the mean up is all there is."""
    mean_up_3 = -c2w_N44[:, :3, 1].mean(axis=0)
    mean_up_3 /= max(np.linalg.norm(mean_up_3), 1e-12)
    x_N3 = c2w_N44[:, :3, 0]
    values_3, vectors_33 = np.linalg.eigh(x_N3.T @ x_N3)
    # the x axes must spread over a plane (its normal is up), not along a line or in all directions
    if values_3[1] < 0.05 * values_3.sum() or values_3[0] > 0.25 * values_3[1]:
        return mean_up_3
    up_3 = vectors_33[:, 0]
    return up_3 if up_3 @ mean_up_3 >= 0 else -up_3


def into_gauge(c2w_N44: np.ndarray, radius: float) -> np.ndarray:
    """Known poses moved and scaled so that the point nearest to all optical axes is the origin
    and the mean camera distance to it is `radius` (the gauge of the estimated poses)."""
    centres_N3, axes_N3 = c2w_N44[:, :3, 3], c2w_N44[:, :3, 2]
    projectors_N33 = np.eye(3) - axes_N3[:, :, None] * axes_N3[:, None, :]
    target_3 = np.linalg.lstsq(projectors_N33.sum(0), (projectors_N33 @ centres_N3[:, :, None]).sum(0)[:, 0],
                               rcond=None)[0]
    scale = radius / np.linalg.norm(centres_N3 - target_3, axis=1).mean()
    out_N44 = np.array(c2w_N44, dtype=np.float64, copy=True)
    out_N44[:, :3, 3] = (centres_N3 - target_3) * scale
    return out_N44
